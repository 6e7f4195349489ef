"""The training curves of a run: per-epoch loss, train top-1 and learning rate of every training stage."""

from pathlib import Path

CURVES = "training_curves.png"


def training_history(reports):
    """Stage name -> its per-epoch records (as kept in each StageReport's `extra["history"]`)."""
    return {r.stage: r.extra["history"] for r in reports if r.extra.get("history")}


def write_curves(reports, folder):
    """Write `training_curves.png` into the run folder; None when no stage trained."""
    history = training_history(reports)
    if not history:
        return None
    # matplotlib's Agg canvas directly: no display needed and the user's pyplot backend is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    offset = 0
    for stage, entries in history.items():
        epochs = [offset + i + 1 for i in range(len(entries))]
        offset += len(entries)
        for ax, key in zip(axes, ("loss", "train_top1", "lr")):
            ax.plot(epochs, [e[key] for e in entries], marker="o", markersize=3, label=stage)
    for ax, title in zip(axes, ("training loss", "train top-1", "learning rate")):
        ax.set_title(title)
        ax.set_xlabel("epoch (stages in order)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(folder) / CURVES
    fig.savefig(str(path), dpi=100)
    return path
