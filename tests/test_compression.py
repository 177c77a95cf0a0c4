"""Compression of VQ codes: the byte format, the range coder against the entropy, and the VQ-VAE round trip."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from lit_gen import VQVAEModule
from lit_gen.compression import bits_per_code, code_probabilities, decode_codes, encode_codes, information_bits
from lit_gen.compression.format import FIXED, Header, pack_fixed, read_header, write_header, write_varint
from lit_gen.nets import VectorQuantizer, VQDecoder, VQEncoder
from tests.helpers import digits


def tiny_vqvae(ema: bool = True, **kwargs: object) -> VQVAEModule:
    """A seeded VQ-VAE for 1×8×8 digits: a 4×4 grid of 16 codes of 4 dims."""
    L.seed_everything(0, verbose=False)
    kwargs.setdefault("encoder", VQEncoder((1, 8, 8), code_dim=4, width=8))
    kwargs.setdefault("decoder", VQDecoder(4, (1, 8, 8), width=8))
    kwargs.setdefault("quantizer", VectorQuantizer(num_codes=16, code_dim=4, ema=ema))
    return VQVAEModule(**kwargs)  # type: ignore[arg-type]


def digit_batches(n: int = 2) -> list[torch.Tensor]:
    dm = digits(value_range=(0.0, 1.0), batch_size=32)
    dm.setup()
    return [dm.to_float(images) for images, _ in list(dm.train_dataloader())[:n]]


def test_varints_and_header_bytes() -> None:
    assert [write_varint(v) for v in (0, 127, 128, 300)] == [b"\x00", b"\x7f", b"\x80\x01", b"\xac\x02"]
    header = Header(FIXED, 512, (7, 7))
    data = write_header(header)
    assert data == b"\x10\x80\x04\x02\x07\x07"  # version 1, fixed; K = 512; 2 dims; 7, 7
    assert read_header(data + b"xyz") == (header, len(data))
    batched = write_header(Header(FIXED, 512, (3, 7, 7), batched=True))
    assert batched[0] == 0x18 and read_header(batched)[0].batched  # bit 3 of the first byte


def test_fixed_packing_by_hand_and_round_trip() -> None:
    import numpy as np

    assert pack_fixed(np.array([1, 2, 3]), 4) == bytes([0b01101100])  # 01 10 11, padded with zeros
    g = torch.Generator().manual_seed(0)
    for k in (1, 2, 5, 256, 1000):
        codes = torch.randint(k, (3, 5), generator=g)
        data = encode_codes(codes, k, "fixed")
        header_bytes = len(write_header(Header(FIXED, k, (3, 5))))
        assert len(data) == header_bytes + math.ceil(15 * bits_per_code(k) / 8)  # the stored size is the rate
        assert torch.equal(decode_codes(data, k), codes[None])


def test_range_coded_size_is_within_a_few_bits_of_the_empirical_entropy() -> None:
    counts = torch.tensor([4096, 2048, 1024, 1024])  # entropy 1.75 bits, 8192 symbols: 14,336 bits
    codes = torch.repeat_interleave(torch.arange(4), counts)
    codes = codes[torch.randperm(len(codes), generator=torch.Generator().manual_seed(0))]
    entropy = -(counts / counts.sum() * (counts / counts.sum()).log2()).sum().item() * len(codes)
    probabilities = code_probabilities(counts)
    data = encode_codes(codes, 4, "frequency", probabilities)
    payload_bits = 8 * (len(data) - read_header(data)[1])
    assert entropy == 14336 and entropy <= payload_bits <= entropy + 64
    ideal = information_bits(codes[None], probabilities).item()  # under the add-one smoothed model
    assert entropy <= ideal <= entropy + 1
    assert torch.equal(decode_codes(data, 4, probabilities), codes[None])


def test_frequency_coding_beats_fixed_length_on_skewed_codes() -> None:
    codes = torch.zeros(7, 7, dtype=torch.long)
    codes[0, :3] = torch.tensor([5, 100, 511])
    probabilities = code_probabilities(torch.tensor([1000] + [1] * 511))
    frequency, fixed = encode_codes(codes, 512, "frequency", probabilities), encode_codes(codes, 512, "fixed")
    assert len(frequency) < len(fixed) == 6 + math.ceil(49 * 9 / 8)
    assert torch.equal(decode_codes(frequency, 512, probabilities), codes[None])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x70\x05", "not lit_gen VQ codes"),
        (b"\x10\x80", "truncated"),
        (encode_codes(torch.zeros(2, 2, dtype=torch.long), 8, "fixed"), "8-code codebook but this model has 16"),
        (encode_codes(torch.zeros(2, 2, dtype=torch.long), 16, "fixed")[:-1], "truncated or damaged"),
    ],
)
def test_bad_data_is_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_codes(data, 16)


@pytest.mark.parametrize("method", ["fixed", "frequency", "position"])
def test_decompress_of_compress_equals_decode_of_quantize_of_encode(method: str) -> None:
    module = tiny_vqvae()
    train, test = digit_batches(2)
    module.train()
    module.loss_terms(train)  # one training forward: the codebook starts from the data
    module.count_codes([train])
    module.eval()
    with torch.no_grad():
        expected = module.decode(module.quantize(module.encode(test)).quantized)
    data = module.compress(test, method)  # type: ignore[arg-type]
    assert len(data) == len(test) and all(isinstance(d, bytes) for d in data)
    assert torch.equal(module.decompress(data), expected)
    assert torch.equal(module.reconstruct(test), expected)
    batch = module.compress(test, method, batched=True)  # type: ignore[arg-type]
    assert len(batch) == 1 and torch.equal(module.decompress(batch), expected)
    assert read_header(batch[0])[0].grid == (len(test), 4, 4) and read_header(batch[0])[0].batched


def test_frequency_coding_needs_counted_codes() -> None:
    module = tiny_vqvae().eval()
    x = digit_batches(1)[0]
    with pytest.raises(ValueError, match=r"no code frequencies yet: count them with module.count_codes"):
        module.compress(x)
    assert len(module.compress(x, "fixed")) == len(x)


def test_count_codes_counts_every_code_of_the_batches() -> None:
    module = tiny_vqvae().eval()
    batches = digit_batches(2)
    counts = module.count_codes(batches)
    assert int(counts.sum()) == sum(len(b) for b in batches) * 16  # a 4×4 grid per image
    assert torch.equal(module.code_counts, counts) and counts.shape == (4, 4, 16)  # per grid position
    codes = torch.cat([module.codes(b) for b in batches])
    for i, j in [(0, 0), (1, 2), (3, 3)]:
        assert torch.equal(counts[i, j], torch.bincount(codes[:, i, j], minlength=16))
    assert module.code_probabilities("frequency").shape == (16,)
    assert module.code_probabilities().shape == (4, 4, 16) and module.default_method == "position"


def test_position_coding_by_hand_and_against_frequency_coding() -> None:
    # codes that depend on the position only: code 2·i + j at (i, j) of a 2×2 grid, K = 4
    counts = torch.zeros(2, 2, 4, dtype=torch.long)
    for i in range(2):
        for j in range(2):
            counts[i, j, 2 * i + j] = 96  # p = 97/100 at its own cell, 1/100 for each other code
    probabilities = code_probabilities(counts)
    assert probabilities[0, 1].tolist() == pytest.approx([0.01, 0.97, 0.01, 0.01])
    codes = torch.tensor([[[0, 1], [2, 3]], [[0, 1], [2, 0]]])  # the second image has one unlikely code
    bits = information_bits(codes, probabilities)
    assert bits.tolist() == pytest.approx([-4 * math.log2(0.97), -3 * math.log2(0.97) - math.log2(0.01)])
    many = codes[:1].repeat(50, 1, 1)  # 200 typical codes: ~9 bits by position, 400 bits by frequency (2 bits each)
    data = encode_codes(many, 4, "position", probabilities, batched=True)
    assert torch.equal(decode_codes(data, 4, probabilities), many)
    flat = code_probabilities(counts.sum((0, 1)))
    frequency = encode_codes(many, 4, "frequency", flat, batched=True)
    assert len(data) == 6 + 4 and len(frequency) >= 6 + 400 // 8  # the header, then whole 32-bit words
    assert torch.equal(decode_codes(encode_codes(codes[1], 4, "position", probabilities), 4, probabilities), codes[1:])
    with pytest.raises(ValueError, match=r"method 'position' needs code probabilities of shape \(2, 2, 4\)"):
        encode_codes(codes[0], 4, "position", flat)


def test_codec_script_round_trips_image_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from torchvision.io import decode_image, write_png

    from lit_gen.cli import LitGenCLI
    from tests.test_cli import FAST, ROOT

    config = str(ROOT / "configs" / "vae" / "vqvae_digits.yaml")
    cli = LitGenCLI(args=["fit", "--config", config, f"--trainer.logger.init_args.save_dir={tmp_path}", *FAST])
    ckpt = str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    module, dm = cli.model.eval(), cli.datamodule
    images = torch.stack([dm.splits["test"][i][0] for i in range(3)])  # uint8 (3, 1, 8, 8)
    pngs = [str(tmp_path / f"digit{i}.png") for i in range(3)]
    for path, image in zip(pngs, images, strict=True):
        write_png(image, path)
    spec = importlib.util.spec_from_file_location("vq_codec", ROOT / "scripts" / "vq_codec.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    capsys.readouterr()

    script.main(["compress", *pngs, "--ckpt", ckpt, "--out", str(tmp_path / "codes")])
    files = [tmp_path / "codes" / f"digit{i}.vq" for i in range(3)]
    assert [f.read_bytes() for f in files] == module.compress(dm.to_float(images))
    assert f"{sum(f.stat().st_size for f in files)} bytes in all" in capsys.readouterr().out

    script.main(["decompress", *map(str, files), "--ckpt", ckpt, "--out", str(tmp_path / "images")])
    decoded = torch.stack([decode_image(str(tmp_path / "images" / f"digit{i}.png")) for i in range(3)])
    assert torch.equal(decoded, dm.to_uint8(module.reconstruct(dm.to_float(images))))
