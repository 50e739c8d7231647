"""Who may act on a case: role and jurisdiction.

The actor (id, role, org) is asserted by an authenticated calling system; these rules
decide whether that actor may send that command to that case. Staff act within their own
org: a grid worker on their grid's cases, a community admin on the community's, a street
officer on the street's, a district officer on the district's. Higher levels cover the
levels below them. Departments act only on cases that summoned them; a resident only on
the case they reported. A party member or volunteer, registered in a grid (their org),
takes a case the community offered to that grid and then handles it as its grid worker
would (组织建单、党员接单), while it is theirs.
"""

from __future__ import annotations

from domain.errors import DomainError
from domain.model import Actor, Level, Role, Severity
from domain.state import CaseState

STAFF_LEVEL: dict[Role, int] = {
    Role.GRID_WORKER: 0,
    Role.COMMUNITY_ADMIN: 1,
    Role.STREET_OFFICER: 2,
    Role.DISTRICT_OFFICER: 3,
}
OFFICER_OF: dict[Level, Role] = {
    Level.COMMUNITY: Role.COMMUNITY_ADMIN,
    Level.STREET: Role.STREET_OFFICER,
    Level.DISTRICT: Role.DISTRICT_OFFICER,
}
_LEVEL_RANK = {Level.COMMUNITY: 1, Level.STREET: 2, Level.DISTRICT: 3}
# who take the cases offered to their grid (党员接单)
TAKER_ROLES = frozenset({Role.PARTY_MEMBER, Role.VOLUNTEER})


def covers(actor: Actor, state: CaseState) -> bool:
    """Staff whose own org is the case's grid, community, street or district."""
    rank = STAFF_LEVEL.get(actor.role)
    return rank is not None and state.orgs[rank] == actor.org


def is_reporter(actor: Actor, state: CaseState) -> bool:
    resident_id = state.case.reporter.resident_id
    return actor.role is Role.RESIDENT and resident_id is not None and actor.id == resident_id


def may_take(actor: Actor, state: CaseState) -> bool:
    """A party member or volunteer of the case's grid, while the case is offered to the
    grid (a minor case at community level) and nobody has claimed it, nor is it named to
    someone else."""
    return (
        actor.role in TAKER_ROLES
        and actor.org == state.case.location.grid_id
        and state.offered
        and not state.claimed
        and state.level is Level.COMMUNITY
        and state.severity is Severity.MINOR
        and state.assignee in (None, actor.id)
    )


def is_taker(actor: Actor, state: CaseState) -> bool:
    """The party member or volunteer who took this case, while it is still theirs (claimed
    by them, at community level); no one else of those roles, and never for another case."""
    return (
        actor.role in TAKER_ROLES
        and actor.role is state.taken_by_role
        and actor.org == state.case.location.grid_id
        and state.claimed
        and state.assignee == actor.id
        and state.level is Level.COMMUNITY
    )


def is_handler(actor: Actor, state: CaseState) -> bool:
    """Staff of the case's current level or above; at community level also the grid's
    workers, or only the named one once the case has an assignee; and the party member or
    volunteer who took the case (`is_taker`)."""
    if is_taker(actor, state):
        return True
    if state.level is None or not covers(actor, state):
        return False
    if actor.role is Role.GRID_WORKER:
        return state.level is Level.COMMUNITY and state.assignee in (None, actor.id)
    return STAFF_LEVEL[actor.role] >= _LEVEL_RANK[state.level]


def is_officer_at_or_above(actor: Actor, state: CaseState, level: Level) -> bool:
    rank = STAFF_LEVEL.get(actor.role)
    return rank is not None and rank >= _LEVEL_RANK[level] and covers(actor, state)


def is_supervising_officer(actor: Actor, state: CaseState) -> bool:
    """A street officer of the case's street or a district officer of its district (督办)."""
    return actor.role in (Role.STREET_OFFICER, Role.DISTRICT_OFFICER) and covers(actor, state)


def supervisor_role(level: Level) -> Role:
    """The officer of the level above; district cases are supervised by the district."""
    above = level.above()
    return OFFICER_OF[above if above is not None else Level.DISTRICT]


def refuse(command: str, actor: Actor, why: str) -> DomainError:
    # A resident's account id may be a phone number in some apps: never quoted.
    who = (
        "actor (resident)"
        if actor.role is Role.RESIDENT
        else f"actor {actor.id} ({actor.role.value})"
    )
    return DomainError(f"{command}: {who} {why}")


def require(allowed: bool, command: str, actor: Actor, why: str) -> None:
    if not allowed:
        raise refuse(command, actor, why)
