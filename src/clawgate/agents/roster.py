"""The agent roster: agents from config, their workspaces, and model refs.

With no ``[[agents]]`` in the config there is one agent, ``main``. The first start creates each
agent's workspace with the starter bootstrap files (never overwriting what a user wrote).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clawgate.config import AgentConfig, Settings
from clawgate.errors import InvalidRequest
from clawgate.sessions.keys import normalize_agent_id

STARTER = Path(__file__).resolve().parent / "starter"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A ``provider/model`` reference, or a bare alias / model id (``provider`` empty) that the
    turn resolves through the providers' model catalogue (``opus``)."""

    provider: str
    model: str

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        text = ref.strip()
        provider, sep, model = text.partition("/")
        if not sep:
            if not text:
                raise InvalidRequest("a model ref must not be empty")
            return cls("", text)
        if not provider or not model:
            raise InvalidRequest(f"model ref {ref!r} must look like 'provider/model' or "
                                 "be a model alias")
        return cls(provider.lower(), model)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}" if self.provider else self.model


@dataclass(frozen=True, slots=True)
class Agent:
    """One configured agent."""

    id: str
    name: str
    workspace: Path
    models: tuple[ModelRef, ...]  # primary first, then fallbacks
    default: bool
    identity: dict[str, str]
    workspace_access: str = "rw"  # "ro": the workspace is not to be written (config)

    def describe(self) -> dict[str, object]:
        """The ``agents.list`` row."""
        row: dict[str, object] = {"id": self.id, "name": self.name,
                                  "workspace": str(self.workspace), "model": str(self.models[0])}
        if self.identity:
            row["identity"] = dict(self.identity)
        return row


class Roster:
    """The agents of one gateway, by normalized id."""

    def __init__(self, settings: Settings) -> None:
        agents = [self._agent(settings, a) for a in settings.agents()]
        self._by_id = {a.id: a for a in agents}
        self.default = next((a for a in agents if a.default), agents[0])

    @staticmethod
    def _agent(settings: Settings, config: AgentConfig) -> Agent:
        refs = (config.model.primary, *config.model.fallbacks)
        identity = {k: v for k, v in config.identity.model_dump().items() if v}
        return Agent(
            id=normalize_agent_id(config.id),
            name=config.name or config.identity.name or config.id,
            workspace=settings.agent_workspace(config),
            models=tuple(ModelRef.parse(r) for r in refs),
            default=config.default,
            identity=identity,
            workspace_access=config.workspace_access,
        )

    def get(self, agent_id: str | None) -> Agent:
        """The agent ``agent_id`` (normalized), or the default agent for None."""
        if agent_id is None:
            return self.default
        agent = self._by_id.get(normalize_agent_id(agent_id))
        if agent is None:
            raise InvalidRequest(f"unknown agent {agent_id!r}; known: {sorted(self._by_id)}")
        return agent

    def __iter__(self) -> Iterator[Agent]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def ensure_workspaces(self) -> None:
        """Create missing workspaces with the starter files. Blocking: call before serving."""
        for agent in self._by_id.values():
            if agent.workspace.exists():
                continue
            agent.workspace.mkdir(parents=True, exist_ok=True)
            for starter in sorted(STARTER.glob("*.md")):
                target = agent.workspace / starter.name
                if not target.exists():
                    shutil.copyfile(starter, target)
