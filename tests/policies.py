"""Built-in policies of earlier versions, as data: cases opened under them keep their rules
to the end (a policy is kept with its case), so the tests keep exercising them."""

from __future__ import annotations

from domain.model import ResidentCategory
from domain.policy import DEFAULT_POLICY, DeadlinePolicy

# 三必问 asked at a revisit, the resident raising nothing: the checklist the built-in
# policy requires of every revisit since 7135-2026.4
NOTHING_RAISED: dict[str, str | None] = {
    "contradictions": None,
    "dissatisfaction": None,
    "concerns": None,
}

# 7135-2026.3: no 三必问 checklist required, no rule for residents' representatives.
POLICY_2026_3 = DeadlinePolicy.model_validate(
    DEFAULT_POLICY.model_dump(exclude={"revisit_checklist"})
    | {
        "version": "7135-2026.3",
        "revisit_rules": {
            category: rule
            for category, rule in DEFAULT_POLICY.model_dump()["revisit_rules"].items()
            if category != ResidentCategory.RESIDENTS_REPRESENTATIVE
        },
    }
)

# 7135-2026.2: no intake, claim or feedback clock, no earliest revisit and no reminders of
# a missed one, the community's two limits instead of the three loops, the on-site clock
# for every handling class, returns that reset the clocks, the flag as the worst colour.
POLICY_2026_2 = DeadlinePolicy.model_validate(
    POLICY_2026_3.model_dump(
        exclude={
            "intake",
            "claim",
            "feedback",
            "revisit_earliest",
            "revisit_reminder",
            "loops",
            "on_site_for",
            "handling_paths",
            "reviewed_returns",
            "flag_is_light",
        }
    )
    | {"version": "7135-2026.2"}
)
