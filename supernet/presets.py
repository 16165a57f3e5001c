"""Named search-space presets. Each is data: a config handed to one space class."""

from __future__ import annotations

from supernet.anycost.space import AnycostGANConfig, AnycostGANSpace
from supernet.mbconv.space import MBConvSpace, MBConvSpaceConfig, StageConfig
from supernet.space import register_space

OFA_DEPTHS = (2, 3, 4)
OFA_KERNELS = (3, 5, 7)
OFA_EXPANDS = (3, 4, 6)


def ofa_mbv3_config(width_mult: float) -> MBConvSpaceConfig:
    """once-for-all's MobileNetV3 space (Cai et al., ICLR 2020), at a fixed width multiplier."""

    def stage(width: int, stride: int, act: str, se: bool) -> StageConfig:
        return StageConfig(width, OFA_DEPTHS, stride, act, se)

    return MBConvSpaceConfig(
        name=f"ofa-mbv3-w{width_mult}",
        head="mbv3",
        in_channels=3,
        num_classes=1000,
        stem_width=16,
        stem_stride=2,
        stem_act="h_swish",
        first_block_width=16,
        first_block_act="relu",
        stages=(
            stage(24, 2, "relu", False),
            stage(40, 2, "relu", True),
            stage(80, 2, "h_swish", False),
            stage(112, 1, "h_swish", True),
            stage(160, 2, "h_swish", True),
        ),
        head_widths=(960, 1280),
        head_act="h_swish",
        kernel_sizes=OFA_KERNELS,
        expand_ratios=OFA_EXPANDS,
        resolutions=tuple(range(128, 225, 4)),
        width_mults=(width_mult,),
        dropout=0.1,
        description=f"once-for-all MobileNetV3 space, width {width_mult}, ImageNet (224x224x3)",
        reference="Cai et al., Once-for-All, ICLR 2020; github.com/mit-han-lab/once-for-all",
    )


@register_space("ofa-mbv3-w1.0")
def ofa_mbv3_w10() -> MBConvSpace:
    return MBConvSpace(ofa_mbv3_config(1.0))


@register_space("ofa-mbv3-w1.2")
def ofa_mbv3_w12() -> MBConvSpace:
    return MBConvSpace(ofa_mbv3_config(1.2))


@register_space("mnist-mbv3")
def mnist_mbv3() -> MBConvSpace:
    """The MobileNetV3 block structure sized for 28x28 grey digits.

    Three downsamplings instead of five (28 -> 14 -> 7 -> 4) and narrow stages, so that a
    supernet trains on a 2-core CPU in minutes; resolutions 12..32 instead of 128..224.
    """

    def stage(width: int, stride: int, act: str, se: bool) -> StageConfig:
        return StageConfig(width, OFA_DEPTHS, stride, act, se)

    return MBConvSpace(
        MBConvSpaceConfig(
            name="mnist-mbv3",
            head="mbv3",
            in_channels=1,
            num_classes=10,
            stem_width=8,
            stem_stride=2,
            stem_act="h_swish",
            first_block_width=8,
            first_block_act="relu",
            stages=(
                stage(16, 2, "relu", False),
                stage(24, 1, "relu", True),
                stage(32, 2, "h_swish", False),
                stage(40, 1, "h_swish", True),
                stage(48, 1, "h_swish", True),
            ),
            head_widths=(192, 256),
            head_act="h_swish",
            kernel_sizes=OFA_KERNELS,
            expand_ratios=OFA_EXPANDS,
            resolutions=(12, 16, 20, 24, 28, 32),
            dropout=0.1,
            description="MobileNetV3 blocks sized for MNIST (28x28x1, 10 classes)",
            reference="structure of once-for-all's MobileNetV3 space, narrowed",
        )
    )


@register_space("mcu-mbv2")
def mcu_mbv2() -> MBConvSpace:
    """An MCUNet/TinyNAS-style MobileNetV2 space with an elastic width multiplier.

    MobileNetV2-1.0 at 224 is exactly {ks: all 3, e: all 6, d: [2,3,4,3,3,1], w: 1.0, r: 224}.
    The head width scales with w as in MCUNet's models (448 channels at w=0.35).
    """
    relu6 = "relu6"
    return MBConvSpace(
        MBConvSpaceConfig(
            name="mcu-mbv2",
            head="mbv2",
            in_channels=3,
            num_classes=1000,
            stem_width=32,
            stem_stride=2,
            stem_act=relu6,
            first_block_width=16,
            first_block_act=relu6,
            stages=(
                StageConfig(24, OFA_DEPTHS, 2, relu6, False),
                StageConfig(32, OFA_DEPTHS, 2, relu6, False),
                StageConfig(64, OFA_DEPTHS, 2, relu6, False),
                StageConfig(96, OFA_DEPTHS, 1, relu6, False),
                StageConfig(160, OFA_DEPTHS, 2, relu6, False),
                StageConfig(320, (1,), 1, relu6, False),
            ),
            head_widths=(1280,),
            head_act=relu6,
            kernel_sizes=OFA_KERNELS,
            expand_ratios=OFA_EXPANDS,
            resolutions=tuple(range(48, 225, 8)),
            width_mults=(0.35, 0.5, 0.75, 1.0),
            dropout=0.2,
            description="MCUNet-style MobileNetV2 space with elastic width, ImageNet (224x224x3)",
            reference="Lin et al., MCUNet, NeurIPS 2020; Sandler et al., MobileNetV2, CVPR 2018",
        )
    )


@register_space("anycost-gan-mnist")
def anycost_gan_mnist() -> AnycostGANSpace:
    """Anycost GAN sub-generators for the bundled digits (padded to 32x32, one channel)."""
    return AnycostGANSpace(
        AnycostGANConfig(
            name="anycost-gan-mnist",
            image_channels=1,
            image_size=32,
            z_dim=64,
            w_dim=64,
            mapping_layers=4,
            widths={4: 128, 8: 128, 16: 64, 32: 32},
            ratios=(0.25, 0.5, 0.75, 1.0),
            resolutions=(8, 16, 32),
            description="Anycost GAN: StyleGAN2-style generator for MNIST (1x32x32), elastic "
            "channels per layer and output resolution",
            reference="Lin et al., Anycost GANs for Interactive Image Synthesis and Editing, "
            "CVPR 2021; Karras et al., StyleGAN2, CVPR 2020",
        )
    )
