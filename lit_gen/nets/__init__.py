"""Plain ``nn.Module`` networks. This package never imports Lightning."""

from lit_gen.nets.classifier import DigitClassifier
from lit_gen.nets.conv_vae import ConvDecoder, ConvEncoder
from lit_gen.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from lit_gen.nets.mlp import MLPDecoder, MLPDiscriminator, MLPEncoder, MLPGenerator

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DigitClassifier",
    "MLPDecoder",
    "MLPDiscriminator",
    "MLPEncoder",
    "MLPGenerator",
]
