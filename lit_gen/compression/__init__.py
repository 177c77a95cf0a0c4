"""Lossy compression with a VQ-VAE's integer codes: byte strings whose length is the rate (no Lightning import)."""

from lit_gen.compression.codes import Method, decode_codes, encode_codes
from lit_gen.compression.entropy import code_probabilities, information_bits
from lit_gen.compression.format import FIXED, FREQUENCY, POSITION, Header, bits_per_code, read_header

__all__ = [
    "FIXED",
    "FREQUENCY",
    "POSITION",
    "Header",
    "Method",
    "bits_per_code",
    "code_probabilities",
    "decode_codes",
    "encode_codes",
    "information_bits",
    "read_header",
]
