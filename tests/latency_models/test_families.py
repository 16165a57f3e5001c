"""Classic CNN families: their counts match timm's models and timm's benchmark tables."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import latency_models as lm
from latency_models.families import FAMILIES, family_spec, fvcore_macs, make_divisible

# timm's benchmark CSVs (huggingface/pytorch-image-models, results/): name, infer_img_size,
# param_count (M), infer_gmacs (fvcore: convs, linears, 2 per BatchNorm output element and the
# final pool's input; both columns rounded to 2 decimals).
# results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv (commit 90cae8c5)
TIMM_PT291 = [
    ("resnet18", 288, 11.69, 3.01),
    ("resnet34", 288, 21.8, 6.07),
    ("resnet26", 288, 16.0, 3.9),
    ("resnet50", 288, 25.56, 6.8),
    ("resnet101", 288, 44.55, 12.95),
    ("resnet152", 288, 60.19, 19.11),
    ("resnet18d", 288, 11.71, 3.41),
    ("resnet34d", 288, 21.82, 6.47),
    ("resnet26d", 288, 16.01, 4.29),
    ("resnet50d", 288, 25.58, 7.19),
    ("resnet101d", 320, 44.57, 16.48),
    ("resnet152d", 320, 60.21, 24.08),
    ("resnet50c", 224, 25.58, 4.35),
    ("resnet101c", 224, 44.57, 8.08),
    ("resnet152c", 224, 60.21, 11.8),
    ("resnet50s", 224, 25.68, 5.47),
    ("resnet101s", 224, 44.67, 9.19),
    ("resnet152s", 224, 60.32, 12.92),
    ("resnet26t", 320, 16.01, 5.24),
    ("resnet50t", 288, 25.57, 7.14),
    ("resnext50_32x4d", 288, 25.03, 7.04),
    ("resnext50d_32x4d", 288, 25.05, 7.44),
    ("resnext101_32x4d", 288, 44.18, 13.24),
    ("resnext101_32x8d", 224, 88.79, 16.48),
    ("resnext101_64x4d", 288, 83.46, 25.66),
    ("wide_resnet50_2", 288, 68.88, 18.89),
    ("wide_resnet101_2", 224, 126.89, 22.8),
    ("mobilenetv2_035", 224, 1.68, 0.07),
    ("mobilenetv2_050", 224, 1.97, 0.1),
    ("mobilenetv2_075", 224, 2.64, 0.22),
    ("mobilenetv2_100", 224, 3.5, 0.31),
    ("mobilenetv2_140", 224, 6.11, 0.6),
    ("mobilenetv2_110d", 224, 4.52, 0.45),
    ("mobilenetv2_120d", 224, 5.83, 0.69),
    ("mobilenetv3_large_075", 224, 3.99, 0.16),
    ("tf_mobilenetv3_large_075", 224, 3.99, 0.16),
    ("mobilenetv3_large_100", 256, 5.48, 0.29),
    ("tf_mobilenetv3_large_100", 224, 5.48, 0.23),
    ("tf_mobilenetv3_large_minimal_100", 224, 3.92, 0.22),
    ("mobilenetv3_small_050", 224, 1.59, 0.03),
    ("mobilenetv3_small_075", 224, 2.04, 0.05),
    ("tf_mobilenetv3_small_075", 224, 2.04, 0.05),
    ("mobilenetv3_small_100", 224, 2.54, 0.06),
    ("tf_mobilenetv3_small_100", 224, 2.54, 0.06),
    ("tf_mobilenetv3_small_minimal_100", 224, 2.04, 0.06),
    ("efficientnet_b0", 256, 5.29, 0.52),
    ("tf_efficientnet_b0", 224, 5.29, 0.4),
    ("efficientnet_b1", 288, 7.79, 0.97),
    ("tf_efficientnet_b1", 240, 7.79, 0.71),
    ("efficientnet_b2", 288, 9.11, 1.12),
    ("tf_efficientnet_b2", 260, 9.11, 1.02),
    ("efficientnet_b3", 320, 12.23, 2.01),
    ("tf_efficientnet_b3", 300, 12.23, 1.87),
    ("efficientnet_b4", 384, 19.34, 4.51),
    ("tf_efficientnet_b4", 380, 19.34, 4.49),
    ("efficientnet_b5", 448, 30.39, 9.59),
    ("tf_efficientnet_b5", 456, 30.39, 10.46),
    ("efficientnet_b6", 528, 43.04, 19.4),
    ("tf_efficientnet_b6", 528, 43.04, 19.4),
    ("efficientnet_b7", 600, 66.35, 38.33),
    ("tf_efficientnet_b7", 600, 66.35, 38.33),
    ("efficientnet_lite0", 224, 4.65, 0.4),
    ("tf_efficientnet_lite0", 224, 4.65, 0.4),
    ("efficientnet_lite1", 240, 5.42, 0.62),
    ("tf_efficientnet_lite1", 240, 5.42, 0.62),
    ("efficientnet_lite2", 260, 6.09, 0.89),
    ("tf_efficientnet_lite2", 260, 6.09, 0.89),
    ("efficientnet_lite3", 300, 8.2, 1.65),
    ("tf_efficientnet_lite3", 300, 8.2, 1.65),
    ("efficientnet_lite4", 380, 13.01, 4.04),
    ("tf_efficientnet_lite4", 380, 13.01, 4.04),
    ("efficientnet_es", 224, 5.44, 1.81),
    ("tf_efficientnet_es", 224, 5.44, 1.81),
    ("efficientnet_em", 240, 6.9, 3.04),
    ("tf_efficientnet_em", 240, 6.9, 3.04),
    ("efficientnet_el", 300, 10.59, 8.0),
    ("tf_efficientnet_el", 300, 10.59, 8.0),
    ("tinynet_a", 192, 6.19, 0.35),
    ("tinynet_b", 188, 3.73, 0.21),
    ("tinynet_c", 184, 2.46, 0.11),
    ("tinynet_d", 152, 2.34, 0.05),
    ("tinynet_e", 106, 2.04, 0.03),
    ("mnasnet_050", 224, 2.22, 0.11),
    ("semnasnet_050", 224, 2.08, 0.11),
    ("mnasnet_075", 224, 3.17, 0.23),
    ("semnasnet_075", 224, 2.91, 0.23),
    ("mnasnet_100", 224, 4.38, 0.33),
    ("semnasnet_100", 224, 3.89, 0.32),
    ("mnasnet_140", 224, 7.12, 0.6),
    ("semnasnet_140", 224, 6.11, 0.6),
    ("mnasnet_small", 224, 2.03, 0.07),
    ("spnasnet_100", 224, 4.42, 0.35),
    ("fbnetc_100", 224, 5.57, 0.4),
    ("lcnet_035", 224, 1.64, 0.03),
    ("lcnet_050", 224, 1.88, 0.05),
    ("lcnet_075", 224, 2.36, 0.1),
    ("lcnet_100", 224, 2.95, 0.16),
    ("lcnet_150", 224, 4.5, 0.34),
    ("regnetx_002", 224, 2.68, 0.2),
    ("regnetx_004", 224, 5.16, 0.4),
    ("regnetx_006", 224, 6.2, 0.61),
    ("regnetx_008", 224, 7.26, 0.81),
    ("regnetx_016", 224, 9.19, 1.62),
    ("regnetx_032", 224, 15.3, 3.2),
    ("regnetx_040", 224, 22.12, 3.99),
    ("regnetx_064", 224, 26.21, 6.49),
    ("regnetx_080", 224, 39.57, 8.02),
    ("regnetx_120", 224, 46.11, 12.13),
    ("regnetx_160", 224, 54.28, 15.99),
    ("regnetx_320", 224, 107.81, 31.81),
    ("regnety_002", 224, 3.16, 0.2),
    ("regnety_004", 224, 4.34, 0.41),
    ("regnety_006", 224, 6.06, 0.61),
    ("regnety_008", 224, 6.26, 0.81),
    ("regnety_016", 224, 11.2, 1.63),
    ("regnety_032", 288, 19.44, 5.29),
    ("regnety_040", 288, 20.65, 6.61),
    ("regnety_064", 288, 30.58, 10.56),
    ("regnety_080", 288, 39.18, 13.22),
    ("regnety_120", 288, 51.82, 20.06),
    ("regnety_160", 384, 83.59, 46.87),
    ("regnety_320", 384, 145.05, 95.0),
    ("vgg11", 224, 132.86, 7.61),
    ("vgg11_bn", 224, 132.87, 7.62),
    ("vgg13", 224, 133.05, 11.31),
    ("vgg13_bn", 224, 133.05, 11.33),
    ("vgg16", 224, 138.36, 15.47),
    ("vgg16_bn", 224, 138.37, 15.5),
    ("vgg19", 224, 143.67, 19.63),
    ("vgg19_bn", 224, 143.68, 19.66),
]
# the rows of results/benchmark-infer-amp-nchw-pt113-cu117-rtx3090.csv (commit 89b04521)
# measured at another resolution than in the table above
TIMM_PT113 = [
    ("resnet18", 224, 11.69, 1.82),
    ("resnet34", 224, 21.8, 3.67),
    ("resnet26", 224, 16.0, 2.36),
    ("resnet50", 224, 25.56, 4.11),
    ("resnet101", 224, 44.55, 7.83),
    ("resnet152", 224, 60.19, 11.56),
    ("resnet18d", 224, 11.71, 2.06),
    ("resnet34d", 224, 21.82, 3.91),
    ("resnet26d", 224, 16.01, 2.6),
    ("resnet50d", 224, 25.58, 4.35),
    ("resnet26t", 256, 16.01, 3.35),
    ("resnet50t", 224, 25.57, 4.32),
    ("resnext50_32x4d", 224, 25.03, 4.26),
    ("resnext50d_32x4d", 224, 25.05, 4.5),
    ("resnext101_32x4d", 224, 44.18, 8.01),
    ("wide_resnet50_2", 224, 68.88, 11.43),
    ("mobilenetv3_large_100", 224, 5.48, 0.23),
    ("efficientnet_b0", 224, 5.29, 0.4),
    ("efficientnet_b1", 256, 7.79, 0.77),
    ("regnety_120", 224, 51.82, 12.14),
    ("regnety_160", 288, 83.59, 26.37),
    ("regnety_320", 224, 145.05, 32.34),
]
# Exact counts of timm's own models (huggingface/pytorch-image-models @aa4b5850, built with torch
# on this machine): params, and conv + linear MACs at the default resolution. The specs also
# match those models layer for layer (lm.trace, at the default resolution, 161, 227 and 288).
EXACT = {
    "resnet18": (11689512, 1814073344),
    "resnet34": (21797672, 3663761408),
    "resnet26": (15995176, 2342256640),
    "resnet50": (25557032, 4089184256),
    "resnet101": (44549160, 7801405440),
    "resnet152": (60192808, 11513626624),
    "resnet18d": (11708744, 2053713920),
    "resnet34d": (21816904, 3903401984),
    "resnet26d": (16014408, 2581897216),
    "resnet50d": (25576264, 4328824832),
    "resnet101d": (44568392, 10501963776),
    "resnet152d": (60212040, 15350579200),
    "resnet50c": (25576264, 4328824832),
    "resnet101c": (44568392, 8041046016),
    "resnet152c": (60212040, 11753267200),
    "resnet50s": (25680808, 5444337664),
    "resnet101s": (44672936, 9156558848),
    "resnet152s": (60316584, 12868780032),
    "resnet26t": (16011872, 3330359296),
    "resnet50t": (25573728, 4297213952),
    "resnext50_32x4d": (25028904, 4230479872),
    "resnext50d_32x4d": (25048136, 4470120448),
    "resnext101_32x4d": (44177704, 7969996800),
    "resnext101_32x8d": (88791336, 16414015488),
    "resnext101_64x4d": (83455272, 15460270080),
    "wide_resnet50_2": (68883240, 11398021120),
    "wide_resnet101_2": (126886696, 22753050624),
    "mobilenetv2_035": (1677128, 59285808),
    "mobilenetv2_050": (1968680, 97131840),
    "mobilenetv2_075": (2636424, 209069792),
    "mobilenetv2_100": (3504872, 300774272),
    "mobilenetv2_140": (6108776, 582195824),
    "mobilenetv2_110d": (4516520, 430516080),
    "mobilenetv2_120d": (5831144, 668857568),
    "mobilenetv3_large_075": (3993528, 154560624),
    "tf_mobilenetv3_large_075": (3993528, 154560624),
    "mobilenetv3_large_100": (5483032, 216589760),
    "tf_mobilenetv3_large_100": (5483032, 216589760),
    "tf_mobilenetv3_large_minimal_100": (3924288, 209136704),
    "mobilenetv3_small_050": (1593224, 24188688),
    "mobilenetv3_small_075": (2041872, 43399344),
    "tf_mobilenetv3_small_075": (2041872, 43399344),
    "mobilenetv3_small_100": (2542856, 56510400),
    "tf_mobilenetv3_small_100": (2542856, 56510400),
    "tf_mobilenetv3_small_minimal_100": (2044736, 52288448),
    "efficientnet_b0": (5288548, 385814752),
    "tf_efficientnet_b0": (5288548, 385814752),
    "efficientnet_b1": (7794184, 686802832),
    "tf_efficientnet_b1": (7794184, 686802832),
    "efficientnet_b2": (9109994, 859853760),
    "tf_efficientnet_b2": (9109994, 993561872),
    "efficientnet_b3": (12233232, 1589198096),
    "tf_efficientnet_b3": (12233232, 1827141392),
    "efficientnet_b4": (19341616, 3063687008),
    "tf_efficientnet_b4": (19341616, 4393771024),
    "efficientnet_b5": (30389784, 9404374080),
    "tf_efficientnet_b5": (30389784, 10266384752),
    "efficientnet_b6": (43040704, 19067593536),
    "tf_efficientnet_b6": (43040704, 19067593536),
    "efficientnet_b7": (66347960, 37745884192),
    "tf_efficientnet_b7": (66347960, 37745884192),
    "efficientnet_lite0": (4652008, 385187552),
    "tf_efficientnet_lite0": (4652008, 385187552),
    "efficientnet_lite1": (5416680, 600185232),
    "tf_efficientnet_lite1": (5416680, 600185232),
    "efficientnet_lite2": (6092072, 859736272),
    "tf_efficientnet_lite2": (6092072, 859736272),
    "efficientnet_lite3": (8197096, 1607554544),
    "tf_efficientnet_lite3": (8197096, 1607554544),
    "efficientnet_lite4": (13006568, 3943564112),
    "tf_efficientnet_lite4": (13006568, 3943564112),
    "efficientnet_es": (5438392, 1788731008),
    "tf_efficientnet_es": (5438392, 1788731008),
    "efficientnet_em": (6899496, 3013321088),
    "tf_efficientnet_em": (6899496, 3013321088),
    "efficientnet_el": (10589712, 7936082848),
    "tf_efficientnet_el": (10589712, 7936082848),
    "tinynet_a": (6187972, 336867712),
    "tinynet_b": (3730562, 200709360),
    "tinynet_c": (2457234, 99536432),
    "tinynet_d": (2338446, 51580656),
    "tinynet_e": (2042972, 24356848),
    "mnasnet_050": (2218512, 104455968),
    "semnasnet_050": (2082006, 103162992),
    "mnasnet_075": (3170208, 215493104),
    "semnasnet_075": (2912278, 223448480),
    "mnasnet_100": (4383312, 314415872),
    "semnasnet_100": (3887038, 311579072),
    "mnasnet_140": (7115728, 588799408),
    "semnasnet_140": (6105992, 586317952),
    "mnasnet_small": (2030264, 68339184),
    "spnasnet_100": (4421616, 333467072),
    "fbnetc_100": (5572200, 384960160),
    "lcnet_035": (1644370, 27357832),
    "lcnet_050": (1880856, 44731008),
    "lcnet_075": (2358288, 94786496),
    "lcnet_100": (2953800, 155700480),
    "lcnet_150": (4501112, 334188416),
    "regnetx_002": (2684792, 199039872),
    "regnetx_004": (5157512, 397677568),
    "regnetx_006": (6196040, 600890112),
    "regnetx_008": (7259656, 799699712),
    "regnetx_016": (9190136, 1602849792),
    "regnetx_032": (15296552, 3176621952),
    "regnetx_040": (22118248, 3964498816),
    "regnetx_064": (26209256, 6460291264),
    "regnetx_080": (39572648, 7995132416),
    "regnetx_120": (46106056, 12086678016),
    "regnetx_160": (54278536, 15940755456),
    "regnetx_320": (107811560, 31735929792),
    "regnety_002": (3162996, 199514080),
    "regnety_004": (4344144, 401842848),
    "regnety_006": (6055160, 601220992),
    "regnety_008": (6263168, 797176832),
    "regnety_016": (11202430, 1612076160),
    "regnety_032": (19436338, 3176482752),
    "regnety_040": (20646656, 3973288448),
    "regnety_064": (30583252, 6355204992),
    "regnety_080": (39180068, 7963057312),
    "regnety_120": (51822544, 12092376576),
    "regnety_160": (83590140, 15911510272),
    "regnety_320": (145046770, 32279552832),
    "vgg11": (132863336, 7609090048),
    "vgg11_bn": (132868840, 7609090048),
    "vgg13": (133047848, 11308466176),
    "vgg13_bn": (133053736, 11308466176),
    "vgg16": (138357544, 15470264320),
    "vgg16_bn": (138365992, 15470264320),
    "vgg19": (143667240, 19632062464),
    "vgg19_bn": (143678248, 19632062464),
}


@pytest.mark.parametrize(("name", "resolution", "params_m", "gmacs"), TIMM_PT291 + TIMM_PT113)
def test_counts_match_timm_benchmark_csv(name, resolution, params_m, gmacs):
    spec = family_spec(name, resolution)
    # within 2%, or within the CSV's rounding to 2 decimals for the smallest networks
    assert abs(spec.params / 1e6 - params_m) <= max(0.02 * params_m, 0.005)
    assert abs(fvcore_macs(spec) / 1e9 - gmacs) <= max(0.02 * gmacs, 0.005)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_counts_equal_timm_models(name):
    spec = family_spec(name)
    assert (spec.params, spec.macs) == EXACT[name]


def test_every_network_is_checked():
    assert set(FAMILIES) == set(EXACT) == {row[0] for row in TIMM_PT291}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_blocks_cover_every_layer(name):
    spec = family_spec(name)
    blocks = {b.name: b for b in spec.blocks}
    assert all(layer.block in blocks for layer in spec.layers)
    assert spec.blocks[0].in_shape == (3, 224, 224) or FAMILIES[name].resolution != 224
    assert spec.output_shape == (1000, 1, 1)
    assert spec.layers[-1].op == "linear"
    kinds = {b.kind for b in spec.blocks}
    assert kinds <= {
        "conv", "deep_stem", "maxpool", "basic", "bottleneck", "dsconv", "mbconv",
        "edge_residual", "global_avgpool", "linear",
    }  # fmt: skip


def test_resnet50_is_v1_5_with_a_relu_after_each_add():
    spec = family_spec("resnet50", batch=8)
    assert spec.batch == 8 and spec.input_shape == (3, 224, 224)
    layers = {layer.name: layer for layer in spec.layers}
    assert layers["layer2.0.conv1"].stride == 1
    assert layers["layer2.0.conv2"].stride == 2  # the stride is on the 3x3 (v1.5)
    assert layers["layer2.0.downsample.0"].stride == 2
    assert layers["layer2.0.conv3"].act is None and layers["layer2.0.conv3"].bn
    assert layers["layer2.0.add"].inputs == ("layer2.0.conv3", "layer2.0.downsample.0")
    assert layers["layer2.0.act"].op == "act" and layers["layer2.0.act"].act == "relu"
    assert sum(layer.op == "add" for layer in spec.layers) == 16
    block = next(b for b in spec.blocks if b.name == "layer3.0")
    assert block.kind == "bottleneck" and block.attrs["downsample"] == "conv"


def test_resnet50d_deep_stem_and_average_pool_downsample():
    spec = family_spec("resnet50d")
    layers = {layer.name: layer for layer in spec.layers}
    assert [layers[f"conv1.{i}"].out_shape[0] for i in (0, 3, 6)] == [32, 32, 64]
    pool = layers["layer2.0.downsample.0"]
    assert (pool.op, pool.kernel, pool.stride) == ("avgpool", 2, 2)
    assert pool.out_shape == (256, 28, 28)
    assert layers["layer2.0.downsample.1"].stride == 1
    assert "layer1.0.downsample.0" not in layers  # stride 1: no pool, only the 1x1 conv


def test_mobilenetv3_se_and_head():
    spec = family_spec("mobilenetv3_large_100")
    layers = {layer.name: layer for layer in spec.layers}
    se = "blocks.2.0.se"
    assert layers[f"{se}.pool"].op == "global_avgpool"
    assert layers[f"{se}.conv_reduce"].act == "relu" and layers[f"{se}.conv_reduce"].bias
    assert layers[f"{se}.conv_expand"].act == "h_sigmoid"
    assert layers[f"{se}.mul"].inputs == ("blocks.2.0.conv_dw", f"{se}.conv_expand")
    assert layers["blocks.3.0.conv_pw"].act == "h_swish"
    assert layers["blocks.1.0.conv_pw"].act == "relu"
    head = layers["conv_head"]
    assert head.in_shape == (960, 1, 1) and head.bias and not head.bn and head.act == "h_swish"


def test_mobilenetv2_head_width_rule():
    # timm keeps the 1280-wide head below width 1.0 and widens it above
    assert family_spec("mobilenetv2_035").layers[-3].out_shape[0] == 1280
    assert family_spec("mobilenetv2_140").layers[-3].out_shape[0] == 1792
    assert make_divisible(0.35 * 16) == 8 and make_divisible(0.35 * 32) == 16


def test_make_divisible_keeps_an_explicit_min_value_of_zero():
    # One make_divisible serves timm's families here and supernet's spaces. The two copies it
    # replaced disagreed at min_value=0: timm's rule (`min_value or divisor`) reads 0 as the
    # default, once-for-all's (`divisor if min_value is None`) keeps it. We keep it, so that an
    # argument a caller gives is never silently replaced: a zero width stays zero.
    assert make_divisible(0, 8, min_value=0) == 0
    assert make_divisible(0) == make_divisible(0, 8, min_value=None) == 8
    # No caller passes min_value, and for any positive width the two rules agree (the 10% rule
    # lifts a rounding to 0 back to the divisor): no network's widths depend on the choice.
    for divisor in (4, 8, 16):
        for value in [0.001, *(x / 4 for x in range(1, 4 * 300))]:
            assert make_divisible(value, divisor, min_value=0) == make_divisible(value, divisor)


def test_efficientnet_lite_has_no_se_and_uses_relu6():
    spec = family_spec("efficientnet_lite0")
    assert not any(layer.op in ("mul", "global_avgpool") for layer in spec.layers[:-2])
    assert {layer.act for layer in spec.layers if layer.op == "conv"} == {"relu6", None}
    effnet = family_spec("efficientnet_b0")
    assert sum(layer.op == "mul" for layer in effnet.layers) == 16
    assert {layer.act for layer in effnet.layers} >= {"swish", "sigmoid"}


def test_regnet_groups_and_se():
    spec = family_spec("regnety_016")
    conv2 = [layer for layer in spec.layers if layer.name.endswith(".conv2")]
    assert {layer.in_shape[0] // layer.groups for layer in conv2} == {24}  # group width
    assert sum(layer.op == "mul" for layer in spec.layers) == 27
    assert not any(layer.op == "mul" for layer in family_spec("regnetx_016").layers)


def test_vgg_head_is_a_7x7_conv():
    spec = family_spec("vgg16")
    fc1 = next(layer for layer in spec.layers if layer.name == "pre_logits.fc1")
    assert fc1.in_shape == (512, 7, 7) and fc1.out_shape == (4096, 1, 1) and fc1.kernel == 7
    assert family_spec("vgg16", 288).layers[-4].out_shape == (4096, 3, 3)
    with pytest.raises(lm.UserError, match="at least 224"):
        family_spec("vgg16", 192)


def test_resolution_and_errors():
    assert family_spec("efficientnet_b3").input_shape == (3, 288, 288)
    assert family_spec("tinynet_e").input_shape == (3, 106, 106)
    assert family_spec("resnet18", 160).macs < family_spec("resnet18").macs
    with pytest.raises(lm.UnknownNetworkError, match="unknown reference network 'densenet121'"):
        family_spec("densenet121")


def test_specs_cost_on_a_gpu_profile():
    hw = lm.load_hardware("a100-sxm")
    costs = hw.predict_many([family_spec(name, batch=64) for name in ("resnet50", "lcnet_050")])
    assert costs[0]["latency_ms"] > costs[1]["latency_ms"] > 0


PUBLIC = Path(__file__).resolve().parents[2] / "latency_models" / "profiles" / "gpu" / "public"
COLUMNS = "network,resolution,batch,precision,layout,runtime,latency_ms,gpu,framework,source,commit"


@pytest.mark.parametrize("path", sorted(PUBLIC.glob("*.csv")), ids=lambda p: p.name)
def test_public_gpu_measurements_are_well_formed(path):
    with path.open(newline="") as f:
        assert f.readline().strip() == COLUMNS
        f.seek(0)
        rows = list(csv.DictReader(f))
    assert rows
    keys = set()
    for r in rows:
        assert r["network"] in FAMILIES
        assert r["precision"] in {"fp32", "tf32", "fp16", "bf16", "int8"}
        assert r["layout"] in {"nchw", "nhwc"}
        assert r["runtime"] in {"eager", "compiled", "tensorrt"}
        assert float(r["latency_ms"]) > 0 and int(r["batch"]) >= 1 and int(r["resolution"]) >= 32
        assert len(r["commit"]) == 40 and r["source"] and r["gpu"] and r["framework"]
        key = tuple(r[c] for c in COLUMNS.split(",") if c not in ("latency_ms", "source", "commit"))
        assert key not in keys, key
        keys.add(key)
