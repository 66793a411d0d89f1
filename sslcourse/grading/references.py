"""The package's own versions of the functions each lab asks students to write.

While a graded function runs in the sandbox, calling any of these (by any name
or alias) fails that test and flags the submission: a lab is about writing the
function, and the package's version would pass every test. A student may still
use the rest of the package (the labs say which helpers they may call, e.g. the
augmentations that ``two_views`` chains).

Limits, stated plainly: a tripwire catches a call; it cannot tell a function
copied out of the package's source by hand (the package is public) from one
written from scratch, and code determined to undo the tripwires inside its own
process can. Both are plagiarism cases for a person to judge, not for a test.
"""

from __future__ import annotations

REFERENCES: dict[str, dict[str, list[str]]] = {
    "lab01_denoising_autoencoders": {
        "gaussian_noise": ["sslcourse.augment.gaussian_noise"],
        "masking_noise": ["sslcourse.augment.masking_noise"],
        "salt_and_pepper": ["sslcourse.augment.salt_and_pepper"],
        "emphasized_mse": ["sslcourse.losses.emphasized_mse"],
        "build_encoder": ["sslcourse.nets.ConvEncoder.__init__"],
    },
    "lab02_context_and_color": {
        "random_block_mask": ["sslcourse.masks.random_block_mask"],
        "masked_reconstruction_loss": ["sslcourse.losses.masked_reconstruction_mse"],
        "rgb_to_lab": ["sslcourse.color.rgb_to_lab"],
        "rebalancing_weights": ["sslcourse.color.rebalancing_weights"],
    },
    "lab03_pretext_tasks": {
        "rotate_batch": ["sslcourse.methods.pretext.rotate_batch"],
        "relative_position_pairs": ["sslcourse.patches.relative_position_pairs"],
        "jigsaw_permutations": ["sslcourse.patches.jigsaw_permutations"],
        "shuffle_tiles": ["sslcourse.patches.shuffle_tiles"],
    },
    "lab04_cpc": {
        "patch_grid": ["sslcourse.patches.patch_grid", "sslcourse.methods.cpc.overlapping_patches"],
        "causal_conv2d": ["sslcourse.methods.cpc.RowContext.forward"],
        "cpc_info_nce": ["sslcourse.methods.cpc.CPC.training_step"],
    },
    "lab05_simclr_moco": {
        "nt_xent": ["sslcourse.losses.nt_xent"],
        "info_nce_queue": ["sslcourse.losses.info_nce"],
        "momentum_update": ["sslcourse.nets.momentum_update"],
        "enqueue": ["sslcourse.methods.contrastive.MoCo.enqueue"],
        "two_views": ["sslcourse.augment.ContrastiveViews.__call__"],
    },
    "lab06_byol_dino": {
        "byol_loss": ["sslcourse.losses.byol_loss"],
        "dino_loss": ["sslcourse.losses.dino_loss"],
        "update_center": ["sslcourse.methods.distillation.DINO.update_center"],
        "update_teacher": ["sslcourse.nets.momentum_update"],
    },
    "lab07_mae": {
        "patchify": ["sslcourse.patches.patchify"],
        "unpatchify": ["sslcourse.patches.unpatchify"],
        "random_masking": ["sslcourse.patches.random_masking"],
        "masked_mse": ["sslcourse.losses.masked_mse"],
    },
}


def references_for(lab: str) -> list[str]:
    """Every reference of the lab, once each (a tripwire fires for any of them during any graded call)."""
    paths: list[str] = []
    for items in REFERENCES.get(lab, {}).values():
        paths += [p for p in items if p not in paths]
    return paths
