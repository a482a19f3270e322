"""The Shapes verifier: accuracy on clean and degraded renders, mismatches, constraints, input handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noiseppo.errors import UserError
from noiseppo.rewards import REWARDS, get_reward
from noiseppo.shapes.grammar import COLOURS, ShapesPrompt, parse
from noiseppo.shapes.render import degrade, render_scene
from noiseppo.shapes.scene import SceneObject, check
from noiseppo.shapes.verifier import detect, verify

WHITE = np.full((32, 32, 3), 255, dtype=np.uint8)


def accuracy(images: np.ndarray, prompts: list[str]) -> float:
    return float(np.mean([v.correct for v in verify(images, prompts)]))


# --------------------------------------------------------------------------- accuracy


def test_ground_truth_objects_satisfy_their_prompts(scenes):
    verdicts = [check(p, objs) for p, objs in zip(scenes.prompts, scenes.truth, strict=True)]
    assert all(v.correct == 1 and v.partial == 1.0 for v in verdicts)


def test_clean_renders_are_all_verified_correct(scenes):
    verdicts = verify(scenes.images, scenes.texts)
    failures = [(v.prompt, v.constraints) for v in verdicts if not v.correct]
    assert failures == []
    assert len(verdicts) == 500


def test_detection_on_clean_renders_matches_the_ground_truth(scenes):
    for found, truth in zip(detect(scenes.images), scenes.truth, strict=True):
        assert sorted(o.name for o in found) == sorted(o.name for o in truth)
        for t in truth:
            # The detected object of this kind nearest to the true one.
            d = min((o for o in found if o.name == t.name), key=lambda o: abs(o.cx - t.cx) + abs(o.cy - t.cy))
            if t.shape == "triangle":
                # An anti-aliased apex or corner pixel may fall below COVERAGE_MIN: the box shrinks by <= 1 px.
                assert max(abs(a - b) for a, b in zip(d.box, t.box, strict=True)) <= 1, (d, t)
                assert abs(d.cx - t.cx) <= 0.5 and abs(d.cy - t.cy) <= 0.5
            else:
                # Squares and circles: exactly the render's box, so exactly its centre.
                assert (d.box, d.cx, d.cy) == (t.box, t.cx, t.cy)
            if t.shape == "square":
                assert d.area == t.area


@pytest.mark.parametrize(
    ("noise", "blur", "threshold"),
    [(True, False, 0.99), (False, True, 0.97), (True, True, 0.95)],
    ids=["noise", "blur", "noise+blur"],
)
def test_robust_to_noise_and_blur(scenes, noise, blur, threshold):
    degraded = degrade(scenes.images, noise, blur, seed=7)
    assert (degraded != scenes.images).any()
    assert accuracy(degraded, scenes.texts) >= threshold


def test_another_scenes_prompt_is_almost_never_accepted(scenes):
    n = len(scenes.prompts)
    others = [scenes.prompts[(i + 1) % n] for i in range(n)]
    keep = [i for i in range(n) if not check(others[i], scenes.truth[i]).correct]  # truly satisfied ones are not wrong
    assert len(keep) >= 480
    assert accuracy(scenes.images[keep], [others[i].text for i in keep]) <= 0.005


OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def test_the_opposite_relation_is_rejected_on_the_relation_alone(scenes):
    index = [i for i, p in enumerate(scenes.prompts) if p.relation is not None]
    assert len(index) >= 60
    flipped = [ShapesPrompt(scenes.prompts[i].groups, OPPOSITE[scenes.prompts[i].relation]).text for i in index]
    for verdict in verify(scenes.images[index], flipped):
        relation = [ok for name, ok in verdict.constraints.items() if name.startswith("relation: ")]
        assert relation == [False], verdict.prompt
        assert verdict.correct == 0 and verdict.partial == 0.75  # both counts and the total still hold


def test_a_wrong_count_is_rejected(scenes):
    index = [i for i, p in enumerate(scenes.prompts) if p.template in ("two", "three")]
    assert len(index) >= 100
    wrong = []
    for i in index:
        g = scenes.prompts[i].groups[0]
        wrong.append(f"{'three' if g.count == 2 else 'two'} {g.colour} {g.shape}s")
    assert accuracy(scenes.images[index], wrong) == 0.0


# --------------------------------------------------------------------------- constraints and partial credit


def test_blank_image_meets_nothing():
    (verdict,) = verify(WHITE[None], ["a red circle"])
    assert verdict.constraints == {"count: red circle = 1": False, "total objects = 1": False}
    assert verdict.correct == 0 and verdict.partial == 0.0
    assert verdict.objects == []


def test_an_extra_object_costs_the_total_constraint():
    image, _ = render_scene("a red circle and a blue square", 0)
    (verdict,) = verify(np.asarray(image)[None], ["a red circle"])
    assert verdict.constraints == {"count: red circle = 1": True, "total objects = 1": False}
    assert verdict.correct == 0 and verdict.partial == 0.5


def test_counts_are_exact():
    image, _ = render_scene("three green squares", 4)
    images = np.asarray(image)[None].repeat(3, axis=0)
    verdicts = verify(images, ["two green squares", "three green squares", "a green square"])
    assert [v.correct for v in verdicts] == [0, 1, 0]
    assert [v.partial for v in verdicts] == [0.0, 1.0, 0.0]
    assert [len(v.objects) for v in verdicts] == [3, 3, 3]


def test_relation_prompt_partial_credit_counts_four_constraints():
    image, _ = render_scene("a red circle", 2)
    (verdict,) = verify(np.asarray(image)[None], ["a red circle above a blue square"])
    assert verdict.constraints == {
        "count: red circle = 1": True,
        "count: blue square = 1": False,
        "total objects = 2": False,
        "relation: red circle above blue square": False,
    }
    assert verdict.partial == 0.25


def obj(colour: str, shape: str, cx: float, cy: float) -> SceneObject:
    return SceneObject(colour, shape, cx, cy, (int(cx) - 4, int(cy) - 4, int(cx) + 4, int(cy) + 4))


@pytest.mark.parametrize(
    ("relation", "first", "second"),
    [
        ("left of", (6, 16), (24, 16)),
        ("right of", (24, 16), (6, 16)),
        ("above", (16, 6), (16, 24)),
        ("below", (16, 24), (16, 6)),
    ],
)
def test_relation_direction(relation, first, second):
    prompt = parse(f"a red circle {relation} a blue square")
    a, b = obj("red", "circle", *first), obj("blue", "square", *second)
    key = f"relation: red circle {relation} blue square"
    assert check(prompt, [a, b]).constraints[key] is True
    assert check(prompt, [b, a]).constraints[key] is True  # object order in the list does not matter
    assert check(prompt, [obj("red", "circle", *second), obj("blue", "square", *first)]).constraints[key] is False
    # Strict order: equal centres along the named axis do not count.
    assert check(prompt, [obj("red", "circle", 16, 16), obj("blue", "square", 16, 16)]).constraints[key] is False
    # Only the named axis matters: moving the second object along the other axis changes nothing.
    horizontal = relation in ("left of", "right of")
    along_other = (second[0], 2) if horizontal else (2, second[1])
    assert check(prompt, [obj("red", "circle", *first), obj("blue", "square", *along_other)]).constraints[key] is True
    level = (first[0], 28) if horizontal else (28, first[1])  # same coordinate on the named axis
    assert check(prompt, [obj("red", "circle", *first), obj("blue", "square", *level)]).constraints[key] is False


def test_relation_needs_each_object_exactly_once():
    prompt = parse("a red circle left of a blue square")
    two_reds = [obj("red", "circle", 4, 16), obj("red", "circle", 4, 4), obj("blue", "square", 24, 16)]
    verdict = check(prompt, two_reds)
    assert verdict.constraints == {
        "count: red circle = 1": False,
        "count: blue square = 1": True,
        "total objects = 2": False,
        "relation: red circle left of blue square": False,
    }
    missing = check(prompt, [obj("red", "circle", 4, 16)])
    assert missing.constraints["relation: red circle left of blue square"] is False


def test_pair_prompt_has_three_constraints_and_ignores_layout():
    prompt = parse("a green triangle and a yellow circle")
    verdict = check(prompt, [obj("yellow", "circle", 4, 4), obj("green", "triangle", 28, 28)])
    assert verdict.constraints == {
        "count: green triangle = 1": True,
        "count: yellow circle = 1": True,
        "total objects = 2": True,
    }
    assert verdict.correct == 1
    wrong_colour = check(prompt, [obj("yellow", "circle", 4, 4), obj("blue", "triangle", 28, 28)])
    assert wrong_colour.correct == 0 and wrong_colour.partial == pytest.approx(2 / 3)


def test_verdict_json():
    image, _ = render_scene("a blue triangle right of a yellow square", 3)
    row = verify(np.asarray(image)[None], ["a  blue triangle right of a yellow square"])[0].to_json()
    assert row["prompt"] == "a blue triangle right of a yellow square"  # canonical text
    assert row["correct"] == 1 and row["partial"] == 1.0
    assert list(row["constraints"]) == [
        "count: blue triangle = 1",
        "count: yellow square = 1",
        "total objects = 2",
        "relation: blue triangle right of yellow square",
    ]
    assert sorted(o["colour"] + " " + o["shape"] for o in row["objects"]) == ["blue triangle", "yellow square"]
    assert set(row["objects"][0]) == {"colour", "shape", "cx", "cy", "box", "area"}


# --------------------------------------------------------------------------- colours and shapes


@pytest.mark.parametrize("colour", list(COLOURS))
@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_each_colour_and_shape_is_recognised_under_blur(colour, shape):
    prompt = f"a {colour} {shape}"
    images = np.stack([np.asarray(render_scene(prompt, s)[0]) for s in range(20)])
    assert accuracy(degrade(images, noise=True, blur=True, seed=1), [prompt] * 20) >= 0.95


def test_a_paler_or_darker_shade_keeps_its_colour():
    image = WHITE.copy()
    image[4:14, 4:14] = (228, 85, 85)  # paler red
    image[18:28, 18:28] = (30, 60, 170)  # dark blue
    (verdict,) = verify(image[None], ["a red square and a blue square"])
    assert verdict.correct == 1


def blend(a: str, b: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.rint((np.array(COLOURS[a]) + np.array(COLOURS[b])) / 2))


def test_a_blend_of_blue_and_yellow_is_nobodys():
    image = WHITE.copy()
    image[10:20, 10:20] = blend("blue", "yellow")  # (135, 140, 130): too little ink along any colour for a core
    assert detect(image[None]) == [[]]


def test_ink_far_from_every_colour_direction_is_nobodys():
    image = WHITE.copy()
    image[10:20, 10:20] = (165, 5, 215)  # purple: 0.83 of blue's ink, but at cosine 0.86 < COSINE_MIN
    assert detect(image[None]) == [[]]
    image[10:20, 10:20] = (40, 40, 230)  # a dark blue, well aligned (cosine 0.99): blue
    assert [(o.colour, o.shape) for o in detect(image[None])[0]] == [("blue", "square")]


@pytest.mark.parametrize(("a", "b"), [("red", "green"), ("red", "blue")])
def test_a_blend_of_two_distant_colours_is_nobodys(a, b):
    image = WHITE.copy()
    image[10:20, 10:20] = blend(a, b)  # cosine < COSINE_MIN to every colour direction
    assert detect(image[None]) == [[]]


@pytest.mark.parametrize(
    ("a", "b", "read_as"), [("red", "yellow", "red"), ("green", "blue", "green"), ("green", "yellow", "green")]
)
def test_a_blend_of_two_near_colours_reads_as_the_nearer_one(a, b, read_as):
    # Documented limit: these blends lie within 18 degrees (cosine >= 0.95) of one palette direction.
    image = WHITE.copy()
    image[10:20, 10:20] = blend(a, b)
    assert [o.colour for o in detect(image[None])[0]] == [read_as]


def test_a_faint_haze_and_specks_are_not_objects():
    image = WHITE.copy()
    image[2:30, 2:30] = (245, 200, 200)  # red at about 20% coverage: below COVERAGE_MIN
    image[5:10, 7] = COLOURS["blue"]  # a 5x5 cross of 9 px: below MIN_AREA
    image[7, 5:10] = COLOURS["blue"]
    image[20:22, 10:25] = COLOURS["green"]  # 30 px but 2 px tall: below MIN_SIDE
    assert detect(image[None]) == [[]]


def test_black_is_not_green():
    image = WHITE.copy()
    image[10:20, 10:20] = (0, 0, 0)
    assert detect(image[None]) == [[]]


# --------------------------------------------------------------------------- input handling


def test_float_nchw_gives_the_same_verdicts_as_uint8_nhwc(scenes):
    images = degrade(scenes.images[:200], noise=True, blur=True, seed=3)
    texts = scenes.texts[:200]
    as_uint8 = [v.to_json() for v in verify(images, texts)]
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    assert [v.to_json() for v in verify(tensor, texts)] == as_uint8
    assert [v.to_json() for v in verify(tensor.numpy().astype(np.float64), texts)] == as_uint8


def test_float_values_outside_0_1_are_clipped():
    image = torch.ones(1, 3, 32, 32) * 1.7  # brighter than white is white
    image[:, :, 8:18, 8:18] = torch.tensor([220, 40, 40]).view(1, 3, 1, 1) / 255.0
    image[:, 1:, 8:18, 8:18] -= 0.5  # and below 0 clips to 0: still red ink direction (255, 255, 255) - (220, 0, 0)
    (verdict,) = verify(image, ["a red square"])
    assert [(o.colour, o.shape) for o in verdict.objects] == [("red", "square")]


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.full((1, 64, 64, 3), 255, np.uint8), "reads 32x32 images, got 64x64"),
        (np.full((1, 32, 48, 3), 255, np.uint8), "got 48x32"),
        (torch.ones(1, 3, 16, 16), "got 16x16"),
        (np.full((1, 3, 32, 32), 255, np.uint8), "uint8 images must be (N, H, W, 3)"),
        (torch.ones(1, 32, 32, 3), "float images must be (N, 3, H, W) in [0, 1]"),
        (np.full((32, 32, 3), 255, np.uint8), "must be a batch"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN or inf"),
        (torch.full((1, 3, 32, 32), float("inf")), "NaN or inf"),
    ],
)
def test_bad_images_raise_user_error(images, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        verify(images, ["a red circle"] * len(images))


def test_one_nan_pixel_is_refused():
    image = torch.ones(2, 3, 32, 32)
    image[1, 0, 5, 5] = float("nan")
    with pytest.raises(UserError, match="NaN"):
        verify(image, ["a red circle", "a red circle"])


def test_prompt_and_image_counts_must_match():
    with pytest.raises(UserError, match="got 2 images but 1 prompts"):
        verify(np.stack([WHITE, WHITE]), ["a red circle"])


def test_prompt_outside_the_grammar_is_a_user_error():
    with pytest.raises(UserError, match="word 3 'hexagon'"):
        verify(WHITE[None], ["a red hexagon"])


def test_batches_do_not_leak_between_images():
    # Two images whose objects would touch if the batch axis were connected.
    first, second = WHITE.copy(), WHITE.copy()
    first[22:32, 10:20] = COLOURS["red"]
    second[0:10, 10:20] = COLOURS["red"]
    found = detect(np.stack([first, second]))
    assert [[o.box for o in objs] for objs in found] == [[(10, 22, 20, 32)], [(10, 0, 20, 10)]]


# --------------------------------------------------------------------------- as a reward


def test_registered_rewards():
    assert {"shapes", "shapes-correct"} <= set(REWARDS)


def test_shapes_rewards_score_partial_and_correct():
    image, _ = render_scene("a red circle and a blue square", 0)
    images = torch.from_numpy(np.stack([np.asarray(image), WHITE])).permute(0, 3, 1, 2).float() / 255.0
    prompts = ["a red circle", "a red circle"]
    partial = get_reward("shapes")(images, prompts)
    correct = get_reward("shapes-correct")(images, prompts)
    assert partial.dtype == torch.float32 and partial.tolist() == [0.5, 0.0]
    assert correct.tolist() == [0.0, 0.0]
    assert get_reward("shapes-correct")(images[:1], ["a red circle and a blue square"]).tolist() == [1.0]
    assert get_reward("shapes").details(images[:1], ["a red circle"])[0]["partial"] == 0.5
