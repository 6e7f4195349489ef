"""Models by name: slimkit's small CIFAR/MNIST-style networks, paddle.vision.models, or your own.

`build_model("resnet20", num_classes=10, in_channels=1)`; a name of the form
`package.module:function` imports and calls your own constructor.
"""

import dataclasses
import inspect
from typing import Optional

import paddle
import paddle.nn as nn

from ..core.errors import ConfigError, ModelError, suggest
from ..core.imports import check_reference, import_object, is_reference
from ..core.schema import Options, option
from ..core.seeding import seeded


@dataclasses.dataclass
class ModelConfig(Options):
    """Which model to build and which weights to start from (config block `model`)."""

    name: str = option("small_cnn", "a registry name (`slimkit models` lists them) or `package.module:function`")
    args: dict = option(default_factory=dict, doc="keyword arguments of the constructor "
                                                  "(num_classes and in_channels come from the data)")
    checkpoint: Optional[str] = option(None, "weights to load: a `.pdparams` file, or a folder written by "
                                             "slimkit's save")
    inference: Optional[str] = option(None, "an exported inference model to compress instead of a model by name: "
                                            "its prefix (`output/inference`), program file (`.json` or "
                                            "`.pdmodel`, with its `.pdiparams`) or folder "
                                            "(docs/exported-models.md)")

    def check(self):
        if self.inference is not None and (self.args or self.name != "small_cnn"):
            key = "args" if self.args else "name"
            raise ConfigError(key, "is not used with `inference` (the program is the model)",
                              f"drop model.{key}, or drop model.inference to build a model by name")
        # The name is checked with the rest of the config; building (and importing) comes later.
        if is_reference(self.name):
            check_reference(self.name, lambda message, hint: ConfigError("name", message, hint))
        elif self.name not in available_models():
            raise ConfigError("name", f"unknown model {self.name!r}", suggest(self.name, list(available_models()))
                              + " (or `package.module:function`; `slimkit models` lists the names)")


class SmallCNN(nn.Layer):
    """Three conv-BN-ReLU blocks and a two-layer classifier on the flattened feature map."""

    def __init__(self, num_classes=10, in_channels=1, input_size=8, width=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2D(in_channels, width, 3, padding=1), nn.BatchNorm2D(width), nn.ReLU(),
            nn.Conv2D(width, 2 * width, 3, padding=1), nn.BatchNorm2D(2 * width), nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Conv2D(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2D(4 * width), nn.ReLU(),
            nn.MaxPool2D(2),
        )
        side = input_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * width * side * side, 8 * width), nn.ReLU(),
            nn.Linear(8 * width, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Layer):
    """ResNet basic block with a projection shortcut when the shape changes."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2D(in_planes, planes, 3, stride=stride, padding=1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(planes)
        self.conv2 = nn.Conv2D(planes, planes, 3, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(planes)
        self.relu = nn.ReLU()
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2D(in_planes, planes, 1, stride=stride, bias_attr=False),
                                          nn.BatchNorm2D(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + identity)


class CifarResNet(nn.Layer):
    """CIFAR-style ResNet (He et al. 2016): depth 6n+2, widths 16/32/64."""

    def __init__(self, depth=20, num_classes=10, in_channels=3):
        super().__init__()
        if (depth - 2) % 6:
            raise ModelError(f"CIFAR ResNet depth must be 6n+2, got {depth}", "use 20, 32, 44, 56 or 110")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2D(in_channels, 16, 3, padding=1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(16)
        self.relu = nn.ReLU()
        layers, in_planes = [], 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(paddle.flatten(self.pool(x), 1))


class MobileNetV1(nn.Layer):
    """MobileNetV1 (Howard et al. 2017) for 32x32 inputs, with a width multiplier `scale`."""

    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, num_classes=10, in_channels=3, scale=1.0):
        super().__init__()

        def ch(c):
            return max(8, int(c * scale))

        layers = [nn.Conv2D(in_channels, ch(32), 3, padding=1, bias_attr=False), nn.BatchNorm2D(ch(32)), nn.ReLU()]
        in_c = ch(32)
        for out, stride in self.CFG:
            layers += [nn.Conv2D(in_c, in_c, 3, stride=stride, padding=1, groups=in_c, bias_attr=False),
                       nn.BatchNorm2D(in_c), nn.ReLU(),
                       nn.Conv2D(in_c, ch(out), 1, bias_attr=False), nn.BatchNorm2D(ch(out)), nn.ReLU()]
            in_c = ch(out)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(in_c, num_classes)

    def forward(self, x):
        return self.fc(paddle.flatten(self.pool(self.features(x)), 1))


class SmallUNet(nn.Layer):
    """A small encoder-decoder segmenter: two stride-2 stages down, upsampling with skip concatenations.

    Returns [N, num_classes, H, W] scores at the input's size. It upsamples by a fixed factor
    (x2 bilinear) and returns one tensor, patterns filter pruning follows today. `aux_head`
    adds a PSPNet-style auxiliary head on the deepest stage (conv-BN-ReLU, then a 1x1
    classifier): the model returns `[scores, aux scores]` in training mode only (for
    `task.aux_weights`), and the scores alone in eval mode.
    """

    def __init__(self, num_classes=4, in_channels=1, width=8, aux_head=False):
        super().__init__()
        w = width
        self.enc1 = _conv_bn_relu(in_channels, w)
        self.enc2 = nn.Sequential(_conv_bn_relu(w, 2 * w, 2), _conv_bn_relu(2 * w, 2 * w))
        self.enc3 = nn.Sequential(_conv_bn_relu(2 * w, 4 * w, 2), _conv_bn_relu(4 * w, 4 * w))
        self.dec2 = _conv_bn_relu(6 * w, 2 * w)
        self.dec1 = _conv_bn_relu(3 * w, w)
        self.head = nn.Conv2D(w, num_classes, 1)
        self.aux = nn.Sequential(_conv_bn_relu(4 * w, 2 * w), nn.Conv2D(2 * w, num_classes, 1)) if aux_head else None

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(paddle.concat([_up(e3, 2), e2], axis=1))
        d1 = self.dec1(paddle.concat([_up(d2, 2), e1], axis=1))
        out = self.head(d1)
        if self.training and self.aux is not None:
            return [out, _up(self.aux(e3), 4)]
        return out


def _conv_bn_relu(in_channels, out_channels, stride=1):
    return nn.Sequential(nn.Conv2D(in_channels, out_channels, 3, stride=stride, padding=1, bias_attr=False),
                         nn.BatchNorm2D(out_channels), nn.ReLU())


def _up(x, factor):
    return nn.functional.interpolate(x, scale_factor=factor, mode="bilinear")


def small_cnn(num_classes=10, in_channels=1, input_size=8, width=16):
    return SmallCNN(num_classes, in_channels, input_size, width)


def resnet20(num_classes=10, in_channels=3):
    return CifarResNet(20, num_classes, in_channels)


def resnet56(num_classes=10, in_channels=3):
    return CifarResNet(56, num_classes, in_channels)


def mobilenet_v1(num_classes=10, in_channels=3, scale=1.0):
    return MobileNetV1(num_classes, in_channels, scale)


def small_unet(num_classes=4, in_channels=1, width=8, aux_head=False):
    return SmallUNet(num_classes, in_channels, width, aux_head)


REGISTRY = {
    "small_cnn": (small_cnn, "3 conv-BN-ReLU blocks + 2 linear layers on the flattened map (digits, MNIST)"),
    "resnet20": (resnet20, "CIFAR-style ResNet-20 (0.27 M params)"),
    "resnet56": (resnet56, "CIFAR-style ResNet-56 (0.86 M params)"),
    "mobilenet_v1": (mobilenet_v1, "MobileNetV1 for 32x32 inputs; args: scale (width multiplier)"),
    "small_unet": (small_unet, "small encoder-decoder segmenter (shapes); args: width, aux_head"),
}


def vision_model_names():
    return sorted(n for n in paddle.vision.models.__all__ if n[0].islower())


def available_models():
    """Name -> one-line description of every model `build_model` knows by name."""
    out = {name: desc for name, (_, desc) in REGISTRY.items()}
    for name in vision_model_names():
        out[name] = "paddle.vision.models." + name
    return out


def build_model(name="small_cnn", num_classes=10, in_channels=None, input_size=None, checkpoint=None, seed=0,
                inference=None, **args):
    """Build a model by registry name or `package.module:function` and load `checkpoint`.

    The weights are initialised under `seed` (the caller's random state is restored after),
    so the same call gives the same model; `model.slimkit_spec` records how to build it again.
    `inference=PATH` rebuilds an exported inference model instead (`slimkit.from_inference`;
    num_classes, in_channels and input_size are the program's own then).
    """
    if isinstance(name, ModelConfig):
        return build_model(name.name, num_classes, in_channels, input_size, name.checkpoint, seed, name.inference,
                           **name.args)
    if inference is not None:
        from ..exported import from_inference

        model = from_inference(inference)
        if checkpoint:
            from .checkpoint import load_weights

            model = load_weights(model, checkpoint)
        return model
    if is_reference(name):
        factory = import_factory(name)
    elif name in REGISTRY:
        factory = REGISTRY[name][0]
    elif name in vision_model_names():
        factory = getattr(paddle.vision.models, name)
    else:
        raise ModelError(f"unknown model {name!r}", suggest(name, list(available_models())) +
                         " (or `package.module:function`; `slimkit models` lists the names)")
    # The data decides these; pass each only where the constructor names it.
    data_args = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
    # paddle.vision constructors take num_classes through **kwargs and only 3 channels.
    # (The registry's own `mobilenet_v1` shadows paddle.vision's and takes in_channels.)
    from_vision = not is_reference(name) and name not in REGISTRY
    accepted = {"num_classes"} if from_vision else _named_parameters(factory)
    kwargs = {k: v for k, v in data_args.items() if v is not None and k in accepted}
    try:
        with seeded(seed):
            model = factory(**{**kwargs, **args})
    except TypeError as err:
        raise ModelError(f"cannot build model {name!r} with args {args}: {err}",
                         "check model.args against the constructor's parameters") from None
    if not isinstance(model, nn.Layer):
        raise ModelError(f"{name!r} returned {type(model).__name__}, not a paddle.nn.Layer")
    model.slimkit_spec = {"name": name, "num_classes": num_classes, "in_channels": in_channels,
                          "input_size": input_size, **args}
    if checkpoint:
        from .checkpoint import load_weights

        model = load_weights(model, checkpoint)
    return model


def _named_parameters(factory):
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()


def import_factory(spec, what="model"):
    """The class or function `package.module:function` names (a model's or a dataset's constructor).

    Only a class or a Python function defined outside the standard library (slimkit.core.imports):
    a config can name the user's own code, never `os:system`.
    """
    return import_object(spec, lambda message, hint: ModelError(f"{what}: {message}", hint))
