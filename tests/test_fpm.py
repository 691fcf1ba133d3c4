"""Feedback Pooling Module: pooling geometry, masking, flip consistency; pose encoder; TRMM."""

from __future__ import annotations

import pytest
import torch

from hpnet.fusion.fpm import JointTokens, pool_at_joints, sample_coords
from hpnet.fusion.pose_encoder import PoseEncoder
from hpnet.fusion.trmm import TRMM
from hpnet.pose.skeleton import FLIP_PERMUTATION, flip_joints


def _random_joints(b=2, t=3, p=2, k=17, missing=0.2, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    j = torch.rand(b, t, p, k, 3, generator=g)
    j[..., 2] = (torch.rand(b, t, p, k, generator=g) > missing).float()
    j[j[..., 2] == 0] = 0.0
    return j


def test_pool_reads_the_feature_under_the_joint():
    """A feature map that stores each patch's own centre x, y: pooling at a joint gives its x, y."""
    gh, gw = 6, 8
    ys, xs = torch.meshgrid(
        (torch.arange(gh) + 0.5) / gh, (torch.arange(gw) + 0.5) / gw, indexing="ij"
    )
    patches = torch.stack([xs, ys], -1).reshape(1, 1, gh * gw, 2)  # (B=1, T=1, N, D=2)
    joints = torch.zeros(1, 1, 1, 17, 3)
    joints[..., 0] = torch.linspace(0.2, 0.8, 17)  # interior: bilinear is exact for a linear map
    joints[..., 1] = torch.linspace(0.3, 0.7, 17)
    joints[..., 2] = 1.0
    pooled = pool_at_joints(patches, (gh, gw), joints, window=1)
    assert pooled.shape == (1, 1, 1, 17, 2)
    torch.testing.assert_close(pooled[0, 0, 0], joints[0, 0, 0, :, :2], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("size", "cells", "grid"),
    [
        (112, (32, 0.5), 4),  # a ResNet: map rounded up (4 cells of 32 px over 112 px)
        (128, (32, 0.5), 4),  # the same at a multiple of the stride
        (100, (16, 8.0), 6),  # C3D: map rounded down (6 cells of 16 px over 100 px)
    ],
)
def test_pool_reads_the_cell_centred_on_the_joint(size, cells, grid):
    """With ``cells = (stride, first)``, a joint at pixel ``first + stride * i`` reads cell i
    exactly, wherever the map's rounding puts its edge; the window steps a cell at a time."""
    stride, first = cells
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    patches = torch.stack([xs, ys], -1).float().reshape(1, 1, grid * grid, 2)  # cell indices
    i = torch.arange(1, grid - 1).float()  # interior cells: the window stays on the map
    joints = torch.zeros(1, 1, 1, len(i), 3)
    joints[..., 0] = (first + stride * i) / size
    joints[..., 1] = (first + stride * i.flip(0)) / size
    joints[..., 2] = 1.0
    for window in (1, 3):
        pooled = pool_at_joints(
            patches, (grid, grid), joints, window, cells=cells, frame_hw=(size, size)
        )
        torch.testing.assert_close(pooled[0, 0, 0], torch.stack([i, i.flip(0)], -1))
    # without cells the map is taken to tile the frame: the old reading, off here
    tiled = pool_at_joints(patches, (grid, grid), joints, window=1)
    assert (tiled[0, 0, 0] - torch.stack([i, i.flip(0)], -1)).abs().max() > 0.1


def test_sample_coords_without_cells_tile_the_frame():
    joints = _random_joints()
    torch.testing.assert_close(sample_coords(joints, (4, 4)), joints[..., :2] * 2 - 1)
    # a ViT's patches as cells: (patch, patch / 2) gives the same coordinates
    same = sample_coords(joints, (4, 4), cells=(16, 8.0), frame_hw=(64, 64))
    torch.testing.assert_close(same, joints[..., :2] * 2 - 1)


def test_missing_joints_are_masked_not_pooled_at_origin():
    patches = torch.randn(2, 3, 16, 8)
    joints = _random_joints()
    pooled = pool_at_joints(patches, (4, 4), joints)
    missing = joints[..., 2] == 0
    assert missing.any()
    assert (pooled[missing] == 0).all()
    assert (pooled[~missing].abs().sum(-1) > 0).all()


def test_flip_consistency():
    """Flipping the frame (patch map) and the joints together pools the same features, L<->R."""
    b, t, gh, gw, d = 2, 3, 4, 6, 5
    patches = torch.randn(b, t, gh * gw, d)
    flipped = patches.view(b, t, gh, gw, d).flip(3).reshape(b, t, gh * gw, d)
    joints = _random_joints(b, t)
    a = pool_at_joints(patches, (gh, gw), joints)
    f = pool_at_joints(flipped, (gh, gw), flip_joints(joints))
    torch.testing.assert_close(f, a[..., list(FLIP_PERMUTATION), :], atol=1e-5, rtol=1e-5)
    missing = torch.zeros(2, 17, 3)
    assert torch.equal(flip_joints(missing), missing)  # never a point at x = 1


def test_joint_tokens_zero_for_missing():
    tok_mod = JointTokens(dim=8, max_persons=2)
    joints = _random_joints()
    pooled = pool_at_joints(torch.randn(2, 3, 16, 8), (4, 4), joints)
    tokens, mask = tok_mod(pooled, joints)
    assert tokens.shape == (2, 3, 34, 8) and mask.shape == (2, 3, 34)
    assert (tokens[~mask] == 0).all()


def _encoder_output(kind: str, joints: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    enc = PoseEncoder(8, 16, kind=kind, max_persons=2).eval()
    return enc(pooled, joints)


def test_graph_layers_read_missing_joints_as_nothing():
    """Whatever a missing joint's slot holds (the encoder leaves its streams' bias there), the
    present joints' outputs are the same: neither the graph nor the temporal convolution reads
    it from a neighbouring joint or frame."""
    from hpnet.fusion.pose_encoder import GraphLayer

    torch.manual_seed(0)
    layer = GraphLayer(8).eval()
    x = torch.randn(2, 2, 5, 17, 8)  # (B, P, T, K, C)
    mask = torch.rand(2, 2, 5, 17) > 0.3
    other = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 3)
    with torch.no_grad():
        a, b = layer(x, mask), layer(other, mask)
    torch.testing.assert_close(a[mask], b[mask])


def test_pose_encoder_ignores_where_missing_joints_are():
    """A joint with confidence 0 does not change the output, wherever its x, y claim to be."""
    joints = _random_joints()
    pooled = torch.randn(2, 3, 2, 17, 8) * (joints[..., 2:] > 0)
    moved = joints.clone()
    missing = moved[..., 2] == 0
    moved[..., 0][missing] = 0.77  # garbage coordinates on the missing joints
    moved[..., 1][missing] = 0.33
    moved_pooled = pooled.clone()
    moved_pooled[missing] = 5.0  # and garbage features
    for kind in ("gcn", "transformer"):
        a = _encoder_output(kind, joints, pooled)
        b = _encoder_output(kind, moved, moved_pooled)
        assert a.shape == (2, 16)
        torch.testing.assert_close(a, b)


def test_pose_encoder_without_anyone_is_finite():
    joints = torch.zeros(1, 4, 2, 17, 3)
    out = _encoder_output("gcn", joints, torch.zeros(1, 4, 2, 17, 8))
    assert torch.isfinite(out).all()


def test_pose_encoder_is_order_sensitive():
    joints = _random_joints(1, 6, missing=0.0)
    pooled = torch.randn(1, 6, 2, 17, 8)
    a = _encoder_output("gcn", joints, pooled)
    b = _encoder_output("gcn", joints.flip(1), pooled.flip(1))
    assert not torch.allclose(a, b, atol=1e-4)


def test_trmm_identity_at_init_and_per_sample():
    trmm = TRMM(text_dim=12, pose_dim=6)
    text = torch.randn(5, 12)
    out = trmm(text, None, batch=3)
    assert out.shape == (3, 5, 12)
    torch.testing.assert_close(out[0], text, atol=1e-2, rtol=0)  # refine starts near zero
    pose = torch.randn(3, 6)
    with torch.no_grad():
        trmm.film.weight.normal_()
    mod = trmm(text, pose, batch=3)
    assert not torch.allclose(mod[0], mod[1])  # each clip gets its own class embeddings


def test_trmm_modulates_by_the_pose_as_film():
    """e_c = t_c + refine(t_c) + gamma(pose) * t_c + beta(pose), with FiLM set by hand."""
    torch.manual_seed(0)
    trmm = TRMM(text_dim=4, pose_dim=2)
    text, pose = torch.randn(3, 4), torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    with torch.no_grad():
        trmm.film.weight.zero_()
        trmm.film.weight[:4, 0] = 0.5  # gamma = 0.5 * pose_0 on every dimension
        trmm.film.bias.copy_(torch.tensor([0.0] * 4 + [0.1, 0.2, 0.3, 0.4]))  # beta
    refined = text + trmm.refine(text)
    out = trmm(text, pose, batch=2)
    torch.testing.assert_close(out[0], refined + 0.5 * text + torch.tensor([0.1, 0.2, 0.3, 0.4]))
    torch.testing.assert_close(out[1], refined + torch.tensor([0.1, 0.2, 0.3, 0.4]))


def test_text_head_centres_the_classes_and_caps_its_temperature():
    from hpnet.fusion.head import TextHead, centre_class_embeddings

    text = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    centred = centre_class_embeddings(text)
    expected = torch.nn.functional.normalize(text - text.mean(0), dim=-1)
    torch.testing.assert_close(centred, expected)  # the shared first component is gone
    assert centred[:, 0].abs().max() < 1e-6 and centred.norm(dim=-1).allclose(torch.ones(3))
    torch.manual_seed(0)
    head = TextHead(dim=6, pose_dim=None, text_dim=3)
    with torch.no_grad():
        head.logit_scale.fill_(10.0)  # exp(10) ~ 22026: the head caps it at 100
    logits = head(torch.randn(4, 6), None, text)["logits"]
    assert logits.abs().max() <= 100 + 1e-4 and logits.abs().max() > 50  # cosines times 100


def test_resampled_joints_come_from_each_segments_centre_frame():
    from hpnet.fusion.fpm import resample_joints

    joints = torch.arange(16.0).view(1, 16, 1, 1, 1).expand(1, 16, 1, 17, 3)  # value = frame
    picked = resample_joints(joints, 3)[0, :, 0, 0, 0]  # 16 frames in 3 segments of 5.33
    assert picked.tolist() == [2.0, 8.0, 13.0]
    assert resample_joints(joints, 4)[0, :, 0, 0, 0].tolist() == [2.0, 6.0, 10.0, 14.0]
    assert resample_joints(joints, 16) is joints


def test_body_coordinates_ignore_where_and_how_big_the_person_is():
    from hpnet.fusion.pose_encoder import body_coordinates

    joints = _random_joints(missing=0.3)
    present = joints[..., 2] > 0
    moved = joints.clone()
    moved[..., :2] = torch.where(present.unsqueeze(-1), joints[..., :2] * 0.5 + 0.2, 0.0)
    torch.testing.assert_close(body_coordinates(joints, present), body_coordinates(moved, present))


@pytest.mark.parametrize("kind", ["gcn", "transformer"])
def test_an_absent_second_person_changes_nothing(kind):
    from hpnet.fusion.pose_encoder import PoseEncoder

    torch.manual_seed(0)
    enc = PoseEncoder(8, 16, kind=kind, max_persons=2).eval()
    joints = _random_joints(1, 4, 2)
    joints[:, :, 1] = 0
    pooled = torch.randn(1, 4, 2, 17, 8) * (joints[..., 2:] > 0)
    with torch.no_grad():
        both = enc(pooled, joints)
        alone = enc(pooled[:, :, :1], joints[:, :, :1])
    assert torch.isfinite(both).all()
    torch.testing.assert_close(both, alone)


def test_bone_and_motion_streams_are_zero_where_a_partner_is_missing():
    from hpnet.fusion.pose_encoder import PoseEncoder
    from hpnet.pose.skeleton import bone_parents

    torch.manual_seed(0)
    enc = PoseEncoder(8, 16).eval()
    joints = _random_joints(1, 4, 2, missing=0.3)
    seen = {}
    enc.streams.register_forward_hook(lambda m, i, o: seen.update(inp=i[0]))
    with torch.no_grad():
        enc(torch.randn(1, 4, 2, 17, 8), joints)
    _, bone, motion = seen["inp"].chunk(3, -1)
    mask = joints[..., 2] > 0
    parents = torch.tensor(bone_parents())
    assert (bone[~(mask & mask[..., parents])] == 0).all()
    both = mask[:, 1:] & mask[:, :-1]
    assert (motion[:, :-1][~both] == 0).all() and (motion[:, -1] == 0).all()


def test_the_window_steps_one_cell_per_axis_on_a_non_square_map():
    """window=3 on a 4 x 8 map averages cells x in {2, 3, 4}, y in {0, 1, 2} around the joint's
    cell (3, 1): a map of x^2 and y^2 (not linear: averages of a line hide the spacing)."""
    gh, gw = 4, 8
    ys, xs = torch.meshgrid(torch.arange(gh).float(), torch.arange(gw).float(), indexing="ij")
    patches = torch.stack([xs**2, ys**2], -1).reshape(1, 1, gh * gw, 2)
    joints = torch.tensor([(3 + 0.5) / gw, (1 + 0.5) / gh, 1.0]).view(1, 1, 1, 1, 3)
    pooled = pool_at_joints(patches, (gh, gw), joints, window=3)
    torch.testing.assert_close(pooled[0, 0, 0, 0], torch.tensor([29 / 3, 5 / 3]))
