"""The distillation loss equals Hinton's formula computed by hand, for several T and alpha."""

import numpy as np
import paddle
import pytest

from slimkit.distill import distillation_loss, kd_loss, softmax_with_temperature

STUDENT = np.array([[2.0, -1.0, 0.5, 0.0], [0.3, 0.2, -2.0, 1.5], [-1.0, 3.0, 0.0, 0.7]], dtype=np.float32)
TEACHER = np.array([[4.0, -2.0, 1.0, 0.0], [0.0, 1.0, -3.0, 2.5], [-2.0, 5.0, 1.0, 0.0]], dtype=np.float32)
LABELS = np.array([0, 3, 1], dtype=np.int64)


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def reference(student, teacher, labels, temperature, alpha, kind="kl"):
    ce = -log_softmax(student)[np.arange(len(labels)), labels].mean()
    log_s, log_t = log_softmax(student / temperature), log_softmax(teacher / temperature)
    p_t = np.exp(log_t)
    if kind == "kl":
        kd = temperature ** 2 * (p_t * (log_t - log_s)).sum(axis=1).mean()
    elif kind == "soft_ce":
        kd = temperature ** 2 * -(p_t * log_s).sum(axis=1).mean()
    else:
        kd = ((student - teacher) ** 2).mean()
    return alpha * ce + (1 - alpha) * kd, ce, kd


def t(x):
    return paddle.to_tensor(x)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("kind", ["kl", "soft_ce", "mse"])
def test_loss_matches_hand_computed_value(temperature, alpha, kind):
    total, parts = distillation_loss(t(STUDENT), t(TEACHER), t(LABELS), temperature, alpha, kind)
    want, want_ce, want_kd = reference(STUDENT, TEACHER, LABELS, temperature, alpha, kind)
    np.testing.assert_allclose(float(total), want, rtol=1e-5)
    np.testing.assert_allclose(float(parts["ce"]), want_ce, rtol=1e-5)
    np.testing.assert_allclose(float(parts["kd"]), want_kd, rtol=1e-5)


def test_alpha_one_is_plain_cross_entropy_and_alpha_zero_pure_distillation():
    ce = float(paddle.nn.functional.cross_entropy(t(STUDENT), t(LABELS)))
    plain, _ = distillation_loss(t(STUDENT), t(TEACHER), t(LABELS), 4.0, 1.0)
    pure, _ = distillation_loss(t(STUDENT), t(TEACHER), t(LABELS), 4.0, 0.0)
    assert float(plain) == pytest.approx(ce, rel=1e-6)
    assert float(pure) == pytest.approx(float(kd_loss(t(STUDENT), t(TEACHER), 4.0)), rel=1e-6)


def test_kl_is_zero_when_student_equals_teacher_and_soft_ce_is_the_teacher_entropy():
    assert float(kd_loss(t(TEACHER), t(TEACHER), 3.0, "kl")) == pytest.approx(0.0, abs=1e-5)
    p = np.exp(log_softmax(TEACHER / 3.0))
    entropy = -(p * np.log(p)).sum(axis=1).mean()
    assert float(kd_loss(t(TEACHER), t(TEACHER), 3.0, "soft_ce")) == pytest.approx(9.0 * entropy, rel=1e-5)


def test_t_squared_keeps_the_gradient_scale():
    # Without T^2 the soft-target gradient shrinks ~1/T^2; with it, it stays within a small factor.
    norms = []
    for temperature in (2.0, 8.0):
        student = t(STUDENT)
        student.stop_gradient = False
        kd_loss(student, t(TEACHER), temperature).backward()
        norms.append(float(student.grad.norm()))
    assert 0.5 < norms[1] / norms[0] < 2.0, norms


def test_higher_temperature_gives_softer_teacher_distribution():
    entropies = []
    for temperature in (0.5, 1.0, 2.0, 4.0, 8.0, 32.0):
        p = softmax_with_temperature(t(TEACHER), temperature).numpy()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
        entropies.append(float(-(p * np.log(p)).sum(axis=1).mean()))
    assert all(a < b for a, b in zip(entropies, entropies[1:])), entropies
    assert entropies[-1] == pytest.approx(np.log(TEACHER.shape[1]), rel=0.01)  # near uniform


def test_huge_logits_stay_finite():
    student, teacher = t(STUDENT * 1e4), t(TEACHER * 1e4)
    for kind in ("kl", "soft_ce"):
        total, parts = distillation_loss(student, teacher, t(LABELS), 1.0, 0.5, kind)
        assert np.isfinite(float(total)) and np.isfinite(float(parts["kd"]))
    want, _, _ = reference(STUDENT * 1e4, TEACHER * 1e4, LABELS, 1.0, 0.5)
    np.testing.assert_allclose(float(distillation_loss(student, teacher, t(LABELS), 1.0, 0.5)[0]), want, rtol=1e-4)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="soft_ce"):
        kd_loss(t(STUDENT), t(TEACHER), 2.0, "kld")
