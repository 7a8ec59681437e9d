"""Bad arguments fail early with a one-line ValueError naming the allowed values."""
import pytest

from gannorm.networks import UnknownNetworkError, build_discriminator, build_generator
from gannorm.registry import UnknownNameError

BUILDERS = [build_generator, build_discriminator]


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


@pytest.mark.parametrize("build", BUILDERS)
def test_unknown_arch_lists_the_known_ones(build):
    with pytest.raises(ValueError) as e:
        build("dcgan", (3, 32, 32))
    assert "unknown network 'dcgan'; known: cnn, dscnn, resnet, mlp, biggan" == _one_line(e)
    assert isinstance(e.value, (KeyError, UnknownNameError, UnknownNetworkError))


@pytest.mark.parametrize("build", BUILDERS)
def test_unsupported_resolution(build):
    with pytest.raises(ValueError) as e:
        build("resnet", (3, 96, 96))
    msg = _one_line(e)
    assert "16, 32, 48, 64, 128" in msg and "official: 32, 48, 128" in msg and "96" in msg
    with pytest.raises(ValueError) as e:
        build("cnn", (3, 36, 36))
    assert "any multiple of 8 (official: 32, 48, 64)" in _one_line(e)


@pytest.mark.parametrize("build", BUILDERS)
def test_wrong_rank_or_shape(build):
    with pytest.raises(ValueError, match=r"'cnn' is for images: data_shape must be \(C, H, W\)"):
        build("cnn", (2,))
    with pytest.raises(ValueError, match=r"'resnet' is for images"):
        build("resnet", (32, 32))
    with pytest.raises(ValueError, match=r"'mlp' is for vectors: data_shape must be \(D,\)"):
        build("mlp", (3, 32, 32))
    with pytest.raises(ValueError, match="square"):
        build("cnn", (3, 32, 64))
    with pytest.raises(ValueError, match="positive integers"):
        build("mlp", (0,))
    with pytest.raises(ValueError, match="positive integers"):
        build("mlp", 2)


@pytest.mark.parametrize("build", BUILDERS)
def test_unknown_option(build):
    with pytest.raises(ValueError) as e:
        build("cnn", (3, 32, 32), depth=3)
    assert _one_line(e) == ("unknown option(s) depth for network 'cnn'; allowed: slope (default 0.1), "
                            "bottom_bn (default 'flat'), extra_convs (default 0)")
    with pytest.raises(ValueError, match="allowed: pool"):
        build("resnet", (3, 32, 32), slope=0.2)
    with pytest.raises(ValueError, match="allowed: depth .*hidden .*slope"):
        build("mlp", (2,), pool="sum")


def test_bad_option_values():
    with pytest.raises(ValueError, match="bottom_bn must be one of flat, channel"):
        build_generator("cnn", (3, 16, 16), bottom_bn="batch")
    with pytest.raises(ValueError, match="pool must be one of sum, mean"):
        build_discriminator("resnet", (3, 16, 16), pool="max")
    with pytest.raises(ValueError, match="linear_bias must be true, false or null"):
        build_discriminator("resnet", (3, 16, 16), linear_bias="yes")
    with pytest.raises(ValueError, match="linear_bias must be true, false or null"):
        build_discriminator("resnet", (3, 16, 16), linear_bias=1)
    with pytest.raises(ValueError, match="depth must be an integer >= 0"):
        build_discriminator("mlp", (2,), depth=-1)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        build_generator("mlp", (2,), hidden=0)
    for build in BUILDERS:
        with pytest.raises(ValueError, match="width must be a finite number > 0"):
            build("mlp", (2,), width=0)
    with pytest.raises(ValueError, match="z_dim must be an integer >= 1"):
        build_generator("mlp", (2,), z_dim=0)


def test_normalization_errors():
    with pytest.raises(KeyError, match="unknown normalization 'spectral'; known: none, sn"):
        build_discriminator("cnn", (3, 16, 16), normalization="spectral")
    with pytest.raises(ValueError, match="requires option"):
        build_discriminator("cnn", (3, 16, 16), width=1 / 8, normalization="bssn")
    with pytest.raises(ValueError, match="unknown option"):
        build_discriminator("cnn", (3, 16, 16), width=1 / 8, normalization="sn", normalization_options={"scal": 1})
