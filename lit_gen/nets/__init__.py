"""Plain ``nn.Module`` networks. This package never imports Lightning."""

from lit_gen.nets.augment import DiffAugment, diff_augment
from lit_gen.nets.classifier import DigitClassifier
from lit_gen.nets.conv_vae import ConvDecoder, ConvEncoder
from lit_gen.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from lit_gen.nets.mlp import MLPDecoder, MLPDiscriminator, MLPEncoder, MLPGenerator
from lit_gen.nets.resnet import ResNetDiscriminator, ResNetGenerator
from lit_gen.nets.resnet_vae import ResNetDecoder, ResNetEncoder
from lit_gen.nets.vq import VectorQuantizer
from lit_gen.nets.vq_conv import VQDecoder, VQEncoder

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DiffAugment",
    "DigitClassifier",
    "MLPDecoder",
    "MLPDiscriminator",
    "MLPEncoder",
    "MLPGenerator",
    "ResNetDecoder",
    "ResNetDiscriminator",
    "ResNetEncoder",
    "ResNetGenerator",
    "VQDecoder",
    "VQEncoder",
    "VectorQuantizer",
    "diff_augment",
]
