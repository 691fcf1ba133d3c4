"""Host-to-device copies without a host wait: values, and (on CUDA) no synchronisation in the
training step's augmentation and in a VideoMAE step."""

from __future__ import annotations

import contextlib

import pytest
import torch

from hpnet.data.randaugment import OPS, rand_augment, sample_randaugment
from hpnet.data.transforms import ClipTransform
from hpnet.host_copy import constant, to_device
from hpnet.models.lsvit import build_lsvit
from hpnet.pretrain.videomae import VideoMAE

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_to_device_casts_and_keeps_values():
    x = torch.tensor([[0.25, 1.5], [3.0, -2.0]], dtype=torch.float64)
    out = to_device(x, "cpu", torch.float32)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out, x.float())
    flags = to_device(torch.tensor([True, False]), torch.device("cpu"), torch.float32)
    assert flags.tolist() == [1.0, 0.0]
    c = constant((0.5, 0.25, 2.0), "cpu", torch.bfloat16)
    assert c.dtype == torch.bfloat16 and c.tolist() == [0.5, 0.25, 2.0]


def test_constant_is_made_once_and_serves_training_after_inference():
    with torch.inference_mode():  # a prediction asks first
        first = constant([[1.0, 2.0], [3.0, 4.0]], "cpu", torch.float32)
    again = constant(((1.0, 2.0), (3.0, 4.0)), torch.device("cpu"), torch.float32)
    assert again is first and not first.is_inference()
    assert constant([[1.0, 2.0], [3.0, 4.0]], "cpu", torch.float64) is not first
    x = torch.ones(2, 2, requires_grad=True)
    (x * again).sum().backward()  # an inference tensor could not be saved for backward
    torch.testing.assert_close(x.grad, first)


@contextlib.contextmanager
def _no_host_sync():
    """Inside: any CUDA call that makes the host wait for the device raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@cuda
def test_to_device_on_cuda_keeps_values():
    x = torch.arange(12, dtype=torch.int64).view(3, 4)
    with _no_host_sync():
        out = to_device(x, "cuda", torch.float32)
    assert out.is_cuda and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), x.float())
    box = torch.tensor([0.1, 0.2, 0.9, 0.8])
    with _no_host_sync():  # an expanded tensor (stride 0), as the test crops pass one
        boxes = to_device(box.expand(5, 4), "cuda")
    torch.testing.assert_close(boxes.cpu(), box.expand(5, 4))


@pytest.mark.gpu
@cuda
def test_the_train_augmentation_makes_the_host_wait_for_nothing():
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (4, 3, 3, 40, 56), dtype=torch.uint8, generator=g).cuda()
    joints = torch.rand(4, 3, 2, 17, 3, generator=g).cuda()
    tf = ClipTransform(32, (0.45,) * 3, (0.25,) * 3, flip=True, scale_min=0.3, jitter=0.4,
                       blur_prob=1.0)  # fmt: skip
    tf.train(video, joints, torch.Generator().manual_seed(1))  # warm-up: pinned pool, kernels
    with _no_host_sync():
        out, mapped = tf.train(video, joints, torch.Generator().manual_seed(1))
    assert out.shape == (4, 3, 3, 32, 32) and mapped.shape == joints.shape


@pytest.mark.gpu
@cuda
def test_randaugment_makes_the_host_wait_for_nothing():
    video = torch.rand(len(OPS), 3, 3, 32, 32, device="cuda") * 255
    joints = torch.rand(len(OPS), 3, 2, 17, 3, device="cuda")
    params = sample_randaugment(len(OPS), 1, 7.0, 0.5, torch.Generator().manual_seed(0))
    params.op[:, 0], params.applied[:] = torch.arange(len(OPS)), True  # every operation once
    rand_augment(video, joints, params, 255.0)  # warm-up
    with _no_host_sync():
        out, moved = rand_augment(video, joints, params, 255.0)
    assert out.shape == video.shape and moved.shape == joints.shape


@pytest.mark.gpu
@cuda
def test_a_videomae_step_makes_the_host_wait_for_nothing():
    torch.manual_seed(0)
    encoder = build_lsvit("tiny", img_size=32, patch_size=8, num_frames=4)
    model = VideoMAE(encoder, mask_ratio=0.75, decoder_width=32, decoder_depth=1).cuda()
    video = torch.randn(2, 4, 3, 32, 32, device="cuda")
    gen = torch.Generator().manual_seed(0)
    model(video, generator=gen)["loss"].backward()  # warm-up
    with _no_host_sync():
        model(video, generator=gen)["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
