"""The registry's promotion lock: one holder at a time across processes and machines (the
registry's unique name is the mutex), a dead holder's lock removed, a long wait one line."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gapline.tracking import TrackingError, promotion_lock
from gapline.tracking.model_registry import LOCK_SUFFIX


@pytest.fixture
def client(tmp_path: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _names(client) -> set[str]:
    return {m.name for m in client.search_registered_models()}


def test_one_holder_at_a_time_and_nothing_left_behind(client) -> None:
    inside: list[int] = []
    overlaps: list[int] = []

    def hold(i: int) -> None:
        with promotion_lock(client, "m", wait=30):
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(i)
            time.sleep(0.3)
            inside.remove(i)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert f"m{LOCK_SUFFIX}" not in _names(client)


def test_a_dead_holders_lock_is_removed_and_a_live_one_waited_for_then_named(client) -> None:
    client.create_registered_model(f"m{LOCK_SUFFIX}", tags={"holder": "host-a:42", "since": str(time.time() - 3600)})
    with promotion_lock(client, "m", wait=5, stale=600):  # an hour old: its holder died
        pass
    client.create_registered_model(f"m{LOCK_SUFFIX}", tags={"holder": "host-b:7", "since": str(time.time())})
    with pytest.raises(TrackingError, match=r"another promotion of 'm' holds the registry's lock 'm.promotion-lock' \(held by host-b:7"):
        with promotion_lock(client, "m", wait=1, stale=600):
            pass
