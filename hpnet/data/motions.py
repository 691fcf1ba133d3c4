"""Actions of the synthetic figure: joint-angle trajectories and 3-D forward kinematics.

An action is a function of normalised time ``t in (0, 1)`` that returns the figure's pose
parameters per frame (torso bend, and an absolute direction per limb segment). Forward
kinematics turns them into 3-D points of an articulated body (1 body unit = standing height),
turned by a random yaw, seen from slightly above, and projected orthographically.

Reversal pairs (``stand_up`` = ``sit_down`` played backwards, ...) are built by drawing exactly
the same random numbers as the forward action and reversing time, so with the same generator
state their joint trajectories are exact time reverses: only the order of the frames tells
them apart. Transition timing is drawn symmetrically about the clip centre so that *when* the
motion happens carries no class information either.

    points = figure_points("wave", length=32, rng=np.random.default_rng(0))  # (32, 23, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Pose parameters per frame: root/torso, then (upper, lower) segment directions per limb, each
# as (abduction: out to the side, flexion: forward) in degrees; 0, 0 = hanging straight down.
_LIMBS = ("l_arm", "r_arm", "l_leg", "r_leg")
PARAMS: tuple[str, ...] = ("root_z", "lift", "pitch", "roll") + tuple(
    f"{limb}_{part}" for limb in _LIMBS for part in ("up_abd", "up_flex", "lo_abd", "lo_flex")
)
_P = {name: i for i, name in enumerate(PARAMS)}
_REST = {"l_arm_up_abd": 8, "l_arm_lo_abd": 6, "l_arm_lo_flex": 12, "l_leg_up_abd": 3}
_REST |= {"l_leg_lo_abd": 2}
_REST |= {k.replace("l_", "r_", 1): v for k, v in _REST.items()}

# Extra points after the 17 COCO joints, used by the renderer.
HEAD, HAIR, LEFT_TOE, RIGHT_TOE, NECK, PELVIS = range(17, 23)
NUM_POINTS = 23


@dataclass(frozen=True)
class Action:
    name: str
    motion: Callable[[np.ndarray, float, np.random.Generator], tuple[np.ndarray, str]]
    yaw: tuple[float, float]  # |yaw| range in degrees (sign random); 0 = facing the camera
    reverse_of: str | None = None  # this action is that one played backwards


def _pose(length: int, **values: np.ndarray | float) -> np.ndarray:
    """Rest pose ``(L, len(PARAMS))`` with the named parameters added on top."""
    out = np.zeros((length, len(PARAMS)), np.float64)
    for name, v in _REST.items():
        out[:, _P[name]] = v
    for name, v in values.items():
        out[:, _P[name]] += v
    return out


def _both(prefix: str, **parts: np.ndarray | float) -> dict[str, np.ndarray | float]:
    """The same values for the left and right limb ``prefix`` ('arm' or 'leg')."""
    return {f"{s}_{prefix}_{k}": v for s in "lr" for k, v in parts.items()}


def _transition(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Eased 0 -> 1 over a window whose centre/duration are symmetric about the clip centre."""
    centre, duration = rng.uniform(0.38, 0.62), rng.uniform(0.4, 0.65)
    x = np.clip((t - centre) / duration + 0.5, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _cycles(t: np.ndarray, rng: np.random.Generator, lo: float, hi: float, speed: float):
    """Cycle phase per frame: random start phase, ``lo..hi`` cycles per 32 frames."""
    return rng.uniform(0, 1) + rng.uniform(lo, hi) * speed * t


def _bump(f: np.ndarray, start: float, width: float) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 pulse over ``[start, start + width]`` of the cycle fraction ``f``."""
    x = np.clip((f - start) / width, 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


# ------------------------------------------------------------------------------------ actions
# Each returns (params (L, len(PARAMS)), support) where support says which feet stay planted:
# "both", "l_leg" / "r_leg" (the standing leg of a kick), or "walk" (the stance foot).


def _sit_down(t, speed, rng):
    s, depth = _transition(t, rng), rng.uniform(0.85, 1.05)
    bend = np.sin(np.pi * s)
    legs = _both("leg", up_flex=85 * depth * s, up_abd=10 * s, lo_abd=4 * s, lo_flex=-15 * bend)
    arms = _both("arm", up_flex=25 * s, lo_flex=58 * s)
    return _pose(len(t), pitch=15 * s + 22 * bend, **legs, **arms), "both"


def _raise_arms(t, speed, rng):
    s, reach = _transition(t, rng), rng.uniform(0.9, 1.0)
    if rng.uniform() < 0.6:  # up through the sides
        arms = _both("arm", up_abd=160 * reach * s, lo_abd=166 * reach * s, lo_flex=-12 * s)
    else:  # up through the front
        arms = _both("arm", up_flex=165 * reach * s, lo_flex=158 * reach * s, up_abd=6 * s)
    return _pose(len(t), **arms), "both"


def _wave(t, speed, rng):
    c, side = _cycles(t, rng, 1.8, 3.2, speed), "lr"[rng.integers(2)]
    swing = np.sin(2 * np.pi * c) * rng.uniform(25, 35)
    arm = {f"{side}_arm_up_abd": rng.uniform(95, 125), f"{side}_arm_lo_abd": 150 + swing}
    return _pose(len(t), roll=rng.uniform(-4, 4), **arm), "both"


def _jumping_jacks(t, speed, rng):
    c = _cycles(t, rng, 1.3, 2.4, speed)
    s = (1 - np.cos(2 * np.pi * c)) / 2
    arms = _both("arm", up_abd=155 * s, lo_abd=165 * s, lo_flex=-12 * s)
    legs = _both("leg", up_abd=17 * s, lo_abd=18 * s)
    return _pose(len(t), lift=0.05 * np.abs(np.sin(2 * np.pi * c)), **arms, **legs), "both"


def _walk(t, speed, rng):
    c = 2 * np.pi * _cycles(t, rng, 1.0, 1.7, speed)
    a, knee = rng.uniform(22, 30), rng.uniform(35, 50)
    sw, cs = np.sin(c), np.cos(c)
    v = {"l_leg_up_flex": a * sw, "r_leg_up_flex": -a * sw}
    v["l_leg_lo_flex"] = a * sw - knee * np.maximum(cs, 0)  # knee bends while the leg swings
    v["r_leg_lo_flex"] = -a * sw - knee * np.maximum(-cs, 0)
    v |= {"l_arm_up_flex": -0.8 * a * sw, "r_arm_up_flex": 0.8 * a * sw}
    v |= {"l_arm_lo_flex": 10 - 0.8 * a * sw, "r_arm_lo_flex": 10 + 0.8 * a * sw}
    return _pose(len(t), pitch=rng.uniform(2, 8), **v), "walk"


def _kick(t, speed, rng):
    f = np.mod(_cycles(t, rng, 1.2, 2.0, speed), 1.0)
    e, side = _bump(f, 0.3, 0.6), "lr"[rng.integers(2)]
    height = rng.uniform(65, 85)
    leg = {
        f"{side}_leg_up_flex": height * e,
        f"{side}_leg_lo_flex": height * e - 95 * e * (1 - e**4),
    }
    arms = _both("arm", up_flex=25, up_abd=12, lo_flex=105, lo_abd=6)
    support = "r_leg" if side == "l" else "l_leg"
    return _pose(len(t), pitch=-10 * e, **leg, **arms), support


def _punch(t, speed, rng):
    f = np.mod(_cycles(t, rng, 1.4, 2.6, speed), 1.0)
    guard = _both("arm", up_flex=35, up_abd=18, lo_flex=135, lo_abd=12)
    v: dict[str, np.ndarray | float] = dict(guard)
    for side, start in (("l", 0.05), ("r", 0.55)):  # alternate left / right punches
        e = _bump(f, start, 0.4)
        v[f"{side}_arm_up_flex"] = 35 + 50 * e
        v[f"{side}_arm_up_abd"] = 18 - 14 * e
        v[f"{side}_arm_lo_flex"] = 135 - 47 * e
        v[f"{side}_arm_lo_abd"] = 12 - 8 * e
    v |= {"l_leg_up_flex": 12.0, "l_leg_lo_flex": 12.0, "r_leg_up_flex": -12.0}
    v |= {"r_leg_lo_flex": -12.0}
    return _pose(len(t), roll=rng.uniform(-3, 3), **v), "both"


def _bow(t, speed, rng):
    f = np.mod(_cycles(t, rng, 0.9, 1.5, speed), 1.0)
    e = _bump(f, 0.15, 0.7) * rng.uniform(55, 75)
    arms = _both("arm", up_flex=0.7 * e, lo_flex=0.7 * e)  # arms keep hanging down
    return _pose(len(t), pitch=e, root_z=-0.0008 * e, **arms), "both"


def _jump(t, speed, rng):
    c = 2 * np.pi * _cycles(t, rng, 1.3, 2.3, speed)
    air, crouch = np.maximum(np.sin(c), 0), np.maximum(-np.sin(c), 0) ** 0.7
    legs = _both("leg", up_flex=55 * crouch, lo_flex=-55 * crouch + 10 * air)
    arms = _both("arm", up_flex=-35 * crouch + 140 * air, lo_flex=-25 * crouch + 150 * air)
    lift = rng.uniform(0.12, 0.2) * air
    return _pose(len(t), lift=lift, pitch=25 * crouch, **legs, **arms), "both"


_FRONT, _SIDE, _OBLIQUE = (0.0, 40.0), (70.0, 100.0), (35.0, 80.0)
_ACTION_LIST = (
    Action("sit_down", _sit_down, _FRONT),
    Action("stand_up", _sit_down, _FRONT, reverse_of="sit_down"),
    Action("raise_arms", _raise_arms, _FRONT),
    Action("lower_arms", _raise_arms, _FRONT, reverse_of="raise_arms"),
    Action("wave", _wave, _FRONT),
    Action("jumping_jacks", _jumping_jacks, _FRONT),
    Action("walk", _walk, _SIDE),
    Action("kick", _kick, _OBLIQUE),
    Action("punch", _punch, _OBLIQUE),
    Action("bow", _bow, _OBLIQUE),
    Action("jump", _jump, _FRONT),
)
ACTIONS: tuple[str, ...] = tuple(a.name for a in _ACTION_LIST)
ACTION_SPECS: dict[str, Action] = {a.name: a for a in _ACTION_LIST}
# (forward, backward) pairs: one action is the other played backwards.
REVERSAL_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (a.reverse_of, a.name) for a in _ACTION_LIST if a.reverse_of
)


# ---------------------------------------------------------------------------- kinematics


def _direction(abd: np.ndarray, flex: np.ndarray, side: float) -> np.ndarray:
    """Unit segment direction ``(L, 3)`` from abduction / flexion in degrees (y up, z forward)."""
    a, f = np.radians(abd), np.radians(flex)
    return np.stack([side * np.sin(a), -np.cos(a) * np.cos(f), np.cos(a) * np.sin(f)], -1)


def _rot_x(deg: np.ndarray) -> np.ndarray:
    """``(L, 3, 3)`` rotations taking +y towards +z (bending forward / camera looking down)."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    o, z = np.ones_like(c), np.zeros_like(c)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(-1, 3, 3)


def _rot_z(deg: np.ndarray) -> np.ndarray:
    """``(L, 3, 3)`` rotations taking +y towards +x (leaning to the figure's left)."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    o, z = np.ones_like(c), np.zeros_like(c)
    return np.stack([c, s, z, -s, c, z, z, z, o], -1).reshape(-1, 3, 3)


def _rot_y(deg: float) -> np.ndarray:
    """``(3, 3)`` rotation taking +z (the figure's front) towards +x (image right)."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _smooth_noise(rng: np.random.Generator, length: int, dims: int, std: float) -> np.ndarray:
    """Slowly varying noise ``(L, dims)``: random knots linearly interpolated, plus jitter."""
    knots = rng.normal(0, std, (5, dims))
    x = np.linspace(0, 4, length)
    lo = np.minimum(x.astype(int), 3)
    w = (x - lo)[:, None]
    return knots[lo] * (1 - w) + knots[lo + 1] * w + rng.normal(0, std / 4, (length, dims))


def body_points(params: np.ndarray, support: str, dims: np.ndarray) -> np.ndarray:
    """Forward kinematics: pose parameters ``(L, len(PARAMS))`` -> body points ``(L, 23, 3)``.

    Body frame: x = the figure's left, y = up (ground at 0), z = the figure's front.
    ``dims`` = (thigh, shin, upper arm, forearm, hip half-width, shoulder half-width,
    shoulder height) in body units. The supporting feet are kept on the ground (and in place).
    """
    thigh, shin, upper, fore, hip_w, sh_w, sh_h = dims
    p = {name: params[:, i] for i, name in enumerate(PARAMS)}
    length = len(params)
    pts = np.zeros((length, NUM_POINTS, 3))
    torso = _rot_z(p["roll"]) @ _rot_x(p["pitch"])  # (L, 3, 3), about the pelvis
    # Points fixed to the torso (head and shoulders), in the torso frame.
    fixed = {
        0: (0, sh_h + 0.095, 0.07),
        1: (0.028, sh_h + 0.115, 0.06),
        2: (-0.028, sh_h + 0.115, 0.06),
        3: (0.062, sh_h + 0.105, -0.005),
        4: (-0.062, sh_h + 0.105, -0.005),
        5: (sh_w, sh_h, 0),
        6: (-sh_w, sh_h, 0),
        HEAD: (0, sh_h + 0.1, 0),
        HAIR: (0, sh_h + 0.112, -0.025),
        NECK: (0, sh_h, 0),
    }
    for k, xyz in fixed.items():
        pts[:, k] = torso @ np.asarray(xyz, float)
    for side, sgn, (sh, el, wr) in (("l", 1.0, (5, 7, 9)), ("r", -1.0, (6, 8, 10))):
        up = _direction(p[f"{side}_arm_up_abd"], p[f"{side}_arm_up_flex"], sgn)
        lo = _direction(p[f"{side}_arm_lo_abd"], p[f"{side}_arm_lo_flex"], sgn)
        pts[:, el] = pts[:, sh] + np.einsum("lij,lj->li", torso, up * upper)
        pts[:, wr] = pts[:, el] + np.einsum("lij,lj->li", torso, lo * fore)
    for side, sgn, (hp, kn, an, toe) in (
        ("l", 1.0, (11, 13, 15, LEFT_TOE)),
        ("r", -1.0, (12, 14, 16, RIGHT_TOE)),
    ):
        pts[:, hp] = (sgn * hip_w, 0, 0)
        pts[:, kn] = pts[:, hp] + thigh * _direction(
            p[f"{side}_leg_up_abd"], p[f"{side}_leg_up_flex"], sgn
        )
        pts[:, an] = pts[:, kn] + shin * _direction(
            p[f"{side}_leg_lo_abd"], p[f"{side}_leg_lo_flex"], sgn
        )
        pts[:, toe] = pts[:, an] + (0, -0.015, 0.075)
    # Place the pelvis so the supporting feet touch the ground and stay put.
    ankles = pts[:, [15, 16]]
    if support in ("l_leg", "r_leg"):
        foot = ankles[:, 0 if support == "l_leg" else 1]
        ground, plant_z = foot[:, 1], foot[:, 2]
    else:
        ground = ankles[:, :, 1].min(1)
        plant_z = ankles[:, :, 2].mean(1)
    root = np.zeros((length, 3))
    root[:, 1] = -ground + p["lift"]
    root[:, 2] = p["root_z"] - (0.0 if support == "walk" else plant_z)
    if support == "walk":  # advance by how far the foot on the ground moves backwards
        back = -np.diff(ankles[:, :, 2], axis=0).min(1).clip(max=0)
        root[1:, 2] += np.cumsum(back)
    pts += root[:, None]
    pts[:, NECK] = pts[:, [5, 6]].mean(1)
    pts[:, PELVIS] = pts[:, [11, 12]].mean(1)
    return pts


def figure_points(action: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """One figure doing ``action``: view-space points ``(L, 23, 3)`` in body units.

    Columns: x (image right), y (image up, ground of the first frame near 0), depth (towards the
    camera). Points 0-16 are the COCO-17 joints; 17+ (HEAD, HAIR, toes, NECK, PELVIS) are for
    drawing. The draws from ``rng`` do not depend on the direction of a reversal pair.
    """
    spec = ACTION_SPECS[action]
    forward = ACTION_SPECS[spec.reverse_of] if spec.reverse_of else spec
    scale = rng.uniform(0.92, 1.08, 4)
    dims = np.array([0.245, 0.245, 0.17, 0.16, 0.085, 0.125, 0.30])
    dims[:4] *= scale
    dims[4:6] *= rng.uniform(0.9, 1.15)
    t = (np.arange(length) + 0.5) / length  # symmetric under t -> 1 - t
    params, support = forward.motion(t, length / 32, rng)
    params[:, 2:] += _smooth_noise(rng, length, len(PARAMS) - 2, 3.0)  # angles only
    yaw = rng.uniform(*spec.yaw) * rng.choice([-1.0, 1.0])
    view = _rot_x(np.array([rng.uniform(0.0, 12.0)]))[0] @ _rot_y(yaw)
    pts = body_points(params, support, dims) @ view.T
    return pts[::-1].copy() if spec.reverse_of else pts
