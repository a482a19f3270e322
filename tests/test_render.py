"""The renderer's guarantees (sizes, gaps, relation margins, pure background, determinism) and ShapesDataset."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from noiseppo.errors import UserError
from noiseppo.sampling.seeds import sample_seed
from noiseppo.shapes.grammar import BACKGROUND, COLOURS, all_prompts, parse
from noiseppo.shapes.render import ShapesDataset, render, render_scene
from noiseppo.shapes.scene import check

ALL = all_prompts()


@pytest.fixture(scope="module")
def every_prompt_once():
    """Each of the 696 prompts rendered once, next to the 500 template-balanced scenes."""
    return [(p, *render_scene(p, seed=i)) for i, p in enumerate(ALL)]


@pytest.fixture(scope="module")
def rendered(scenes, every_prompt_once):
    """(prompt, uint8 image, ground-truth objects) for about 1,200 scenes over all templates."""
    balanced = list(zip(scenes.prompts, scenes.images, scenes.truth, strict=True))
    return balanced + [(p, np.asarray(im), objs) for p, im, objs in every_prompt_once]


def test_scenes_cover_every_template(scenes):
    templates = {p.template for p in scenes.prompts}
    assert templates == {"single", "two", "three", "pair", "relation"}
    assert min(sum(p.template == t for p in scenes.prompts) for t in templates) >= 60


def test_image_is_32x32_rgb(every_prompt_once):
    for _, image, _ in every_prompt_once:
        assert image.mode == "RGB"
        assert image.size == (32, 32)
        assert np.asarray(image).shape == (32, 32, 3) and np.asarray(image).dtype == np.uint8


def test_scene_holds_exactly_the_named_objects(rendered):
    for prompt, _, objects in rendered:
        named = sorted((g.colour, g.shape) for g in prompt.groups for _ in range(g.count))
        assert sorted((o.colour, o.shape) for o in objects) == named, prompt.text
        assert check(prompt, objects).correct == 1, prompt.text


def test_boxes_are_squares_of_8_to_12_px_inside_the_canvas(rendered):
    sides = set()
    for prompt, _, objects in rendered:
        for o in objects:
            x0, y0, x1, y1 = o.box
            assert x1 - x0 == y1 - y0, (prompt.text, o.box)
            assert 8 <= x1 - x0 <= 12, (prompt.text, o.box)
            assert 0 <= x0 and 0 <= y0 and x1 <= 32 and y1 <= 32, (prompt.text, o.box)
            assert (o.cx, o.cy) == ((x0 + x1) / 2, (y0 + y1) / 2)  # the centre is the box centre
            sides.add(x1 - x0)
    assert sides == {8, 9, 10, 11, 12}  # every size is drawn


def test_boxes_keep_at_least_one_empty_pixel_between_them(rendered):
    tightest = 99
    for prompt, _, objects in rendered:
        for a, b in itertools.combinations(objects, 2):
            # Gap along x or y (exclusive x1/y1): the larger of the two is the separation.
            gap = max(b.box[0] - a.box[2], a.box[0] - b.box[2], b.box[1] - a.box[3], a.box[1] - b.box[3])
            assert gap >= 1, (prompt.text, a.box, b.box)
            tightest = min(tightest, gap)
    assert tightest == 1  # the bound is reached, so the check above is not vacuous


def test_relation_margin_is_at_least_3_px_on_the_named_side(rendered):
    margins = []
    for prompt, _, objects in rendered:
        if prompt.relation is None:
            continue
        a, b = objects  # in prompt order
        assert (a.colour, a.shape) == (prompt.groups[0].colour, prompt.groups[0].shape)
        margin = {
            "left of": b.cx - a.cx,
            "right of": a.cx - b.cx,
            "above": b.cy - a.cy,
            "below": a.cy - b.cy,
        }[prompt.relation]
        assert margin >= 3, (prompt.text, a, b)
        margins.append(margin)
    assert len(margins) >= 500
    assert min(margins) == 3


def test_background_outside_every_box_is_pure_white(rendered):
    for prompt, image, objects in rendered:
        outside = np.ones((32, 32), dtype=bool)
        for o in objects:
            x0, y0, x1, y1 = o.box
            outside[y0:y1, x0:x1] = False
        assert (image[outside] == BACKGROUND).all(), prompt.text


def test_objects_are_drawn_in_their_palette_colour(rendered):
    for prompt, image, objects in rendered:
        for o in objects:
            x0, y0, x1, y1 = o.box
            colour = COLOURS[o.colour]
            if o.shape == "triangle":  # apex up: solid just above the base, in the middle
                assert tuple(image[y1 - 2, int(o.cx)]) == colour, (prompt.text, o)
                assert tuple(image[y0, x0]) == BACKGROUND and tuple(image[y0, x1 - 1]) == BACKGROUND
            else:
                assert tuple(image[int(o.cy), int(o.cx)]) == colour, (prompt.text, o)
            if o.shape == "square":  # fills its box exactly
                assert (image[y0:y1, x0:x1] == colour).all(), (prompt.text, o)
            if o.shape == "circle":  # corners stay white
                assert tuple(image[y0, x0]) == BACKGROUND and tuple(image[y1 - 1, x1 - 1]) == BACKGROUND
            # Only this colour's shades (anti-aliased with white) inside the box.
            ink = 255 - image[y0:y1, x0:x1].reshape(-1, 3).astype(float)
            direction = 255 - np.array(colour, dtype=float)
            cosine = ink @ direction / np.maximum(np.linalg.norm(ink, axis=1) * np.linalg.norm(direction), 1e-9)
            assert (cosine[ink.any(axis=1)] > 0.999).all(), (prompt.text, o)


def test_ground_truth_area_counts_the_inked_pixels(rendered):
    for prompt, image, objects in rendered:
        inked = (image != BACKGROUND).any(-1)
        for o in objects:
            x0, y0, x1, y1 = o.box
            assert o.area == inked[y0:y1, x0:x1].sum() > 0, prompt.text
            if o.shape == "square":
                assert o.area == (x1 - x0) ** 2


def test_same_prompt_and_seed_give_identical_bytes():
    for i, p in enumerate(ALL[::7]):
        seed = sample_seed(0, i, 0)
        first, objects = render_scene(p.text, seed)
        again, objects_again = render_scene(p, seed)  # a parsed prompt gives the same scene
        assert first.tobytes() == again.tobytes()
        assert objects == objects_again
        assert render(p.text, seed).tobytes() == first.tobytes()


def test_different_seeds_almost_always_give_different_images():
    differ = [render(p, 0).tobytes() != render(p, 1).tobytes() for p in ALL]
    assert np.mean(differ) >= 0.99


def test_noncanonical_spacing_renders_the_same_scene():
    assert render("a  red\tcircle", 5).tobytes() == render("a red circle", 5).tobytes()


def test_render_rejects_a_prompt_outside_the_grammar():
    with pytest.raises(UserError, match="word 3 'hexagon'"):
        render("a red hexagon", 0)


def test_scene_layout_is_pinned():
    # Layouts come from numpy's PCG64 stream only; if these change, every stored scene and benchmark changes.
    layouts = {
        "a red circle left of a blue square": [("red", "circle", (0, 4, 8, 12)), ("blue", "square", (13, 19, 25, 31))],
        "three yellow triangles": [
            ("yellow", "triangle", (6, 0, 17, 11)),
            ("yellow", "triangle", (18, 3, 26, 11)),
            ("yellow", "triangle", (20, 21, 30, 31)),
        ],
    }
    for prompt, expected in layouts.items():
        assert [(o.colour, o.shape, o.box) for o in render_scene(prompt, 0)[1]] == expected


# --------------------------------------------------------------------------- dataset

DATASET_PROMPTS = ["a red circle", "two blue squares", "a green triangle above a yellow circle"]


def test_dataset_items_are_deterministic_and_random_access():
    forward = ShapesDataset(DATASET_PROMPTS, seed=3)
    items = [forward[i] for i in range(20)]
    backward = ShapesDataset(DATASET_PROMPTS, seed=3)
    for i in reversed(range(20)):
        prompt, image = backward[i]
        assert prompt == items[i][0]
        assert image.tobytes() == items[i][1].tobytes()
    fresh = ShapesDataset(DATASET_PROMPTS, seed=3)
    assert fresh[17][1].tobytes() == items[17][1].tobytes()  # item 17 fetched first


UNBALANCED = ["a red circle", "a blue square", "a green triangle", "two red circles"]  # 3 singles, 1 count


def expected_item(prompts: list[str], seed: int, i: int, balance: bool) -> tuple[str, int]:
    """The documented rule: rng = default_rng([seed, i]); a template (or none), a prompt, a scene seed."""
    groups: dict[str, list[str]] = {}
    for p in prompts:
        groups.setdefault(parse(p).template if balance else "all", []).append(p)
    rng = np.random.default_rng([seed, i])
    group = list(groups.values())[int(rng.integers(len(groups)))]
    prompt = group[int(rng.integers(len(group)))]
    return prompt, int(rng.integers(2**63 - 1))


@pytest.mark.parametrize("balance", [True, False])
def test_dataset_item_follows_the_documented_rule(balance):
    dataset = ShapesDataset(UNBALANCED, seed=11, balance_templates=balance)
    for i in [0, 1, 2, 3, 99, 123_456]:
        prompt, scene_seed = expected_item(UNBALANCED, 11, i, balance)
        got_prompt, got_image = dataset[i]
        assert got_prompt == prompt
        assert got_image.tobytes() == np.asarray(render(prompt, scene_seed)).tobytes()


@pytest.mark.parametrize(("balance", "share"), [(True, 0.5), (False, 0.25)])
def test_dataset_balances_templates_by_default(balance, share):
    dataset = ShapesDataset(UNBALANCED, seed=0, length=400, balance_templates=balance)
    counts = sum(dataset[i][0] == "two red circles" for i in range(400))
    assert abs(counts / 400 - share) < 0.08
    assert ShapesDataset(UNBALANCED)[7][0] == ShapesDataset(UNBALANCED, balance_templates=True)[7][0]


def test_dataset_items_are_uint8_renders_of_prompts_from_the_list():
    dataset = ShapesDataset(DATASET_PROMPTS, seed=0, length=300)
    assert len(dataset) == 300
    seen = []
    for i in range(300):
        prompt, image = dataset[i]
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert prompt in DATASET_PROMPTS
        seen.append(prompt)
    counts = [seen.count(p) for p in DATASET_PROMPTS]
    assert min(counts) >= 70  # three templates, one prompt each: 100 each expected
    with pytest.raises(IndexError):
        dataset[300]
    with pytest.raises(IndexError):
        dataset[-1]


def test_dataset_seed_changes_the_items():
    a, b = ShapesDataset(DATASET_PROMPTS, seed=0), ShapesDataset(DATASET_PROMPTS, seed=1)
    assert sum(a[i][1].tobytes() != b[i][1].tobytes() for i in range(20)) >= 19


def test_dataset_canonicalises_and_checks_its_prompts():
    assert ShapesDataset(["a  red   circle"])[0][0] == "a red circle"
    with pytest.raises(UserError, match="word 2 'purple'"):
        ShapesDataset(["a red circle", "a purple circle"])
    with pytest.raises(ValueError, match="at least one prompt"):
        ShapesDataset([])
