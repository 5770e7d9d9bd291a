"""Gates end to end: the controller process, the real control plane, a real PostgreSQL.

A release whose gates fail is Blocked with the reason and starts nothing;
fixing the cause (creating a Secret key, running the migration, deleting a
failed Job) is enough for it to start, because the gates are re-checked
while it waits.

The migration files inside an image are printed by a Job and read back
through pods/log. kwok runs no container, so the test runs the Job's own
script (`EXTRACT_SCRIPT`) with the real `sh` on a directory laid out like
the image, and kwok serves that output as the pod's log; everything from
the Job to the verdict is the controller's real path.
"""

from __future__ import annotations

import base64
import pathlib
import subprocess
from typing import Any

import psycopg
from kubernetes import client

from controller.adapters.kubernetes_gates import EXTRACT_CONTAINER, EXTRACT_SCRIPT
from devenv.cluster import POD_BEHAVIOR_LABEL, LocalCluster, cri_log
from devenv.postgres import free_port
from tests.e2e.conftest import ControllerFactory
from tests.e2e.helpers import Releases, deployment, release, wait_for

APP = "payments"
IMAGE = "registry.example.com/payments:{}"
STEPS = [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]


def _secret(releases: Releases, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=encoded)
    releases.core.create_namespaced_secret(releases.namespace, body)


def _patch_secret(releases: Releases, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    releases.core.patch_namespaced_secret(name, releases.namespace, {"data": encoded})


def _deployment_with_env(releases: Releases, env: list[dict[str, Any]]) -> None:
    body = deployment(APP, 2, IMAGE.format("v1"))
    body["spec"]["template"]["spec"]["containers"][0]["env"] = env
    releases.apps.create_namespaced_deployment(releases.namespace, body)

    def available() -> bool:
        dep = releases.deployment(APP)
        return bool(dep and dep.status and (dep.status.available_replicas or 0) >= 2)

    wait_for(available, 60, f"deployment {APP} Available")


def _gated_release(**spec: Any) -> dict[str, Any]:
    body = release(APP, "v1", None, steps=STEPS)
    body["spec"].update(spec)
    return body


def _wait_reason(
    releases: Releases, phase: str, reason: str, timeout: float = 90
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = releases.status(APP)
        return status if (status.get("phase"), status.get("reason")) == (phase, reason) else None

    return wait_for(reached, timeout, f"{APP} {phase} ({reason})")


def _result(status: dict[str, Any], gate: str) -> dict[str, Any]:
    return next(r for r in status["gates"]["results"] if r["gate"] == gate)


def test_missing_secret_key_blocks_the_release_and_creating_it_unblocks(
    releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    _secret(releases, "app-secrets", {"JWT_SECRET": "prod-jwt"})
    _deployment_with_env(
        releases,
        [
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": "app-secrets", "key": "DATABASE_URL"}},
            },
            {"name": "NODE_ENV", "value": "production"},
        ],
    )
    gates = {
        "environment": {
            "required": ["DATABASE_URL", "NODE_ENV"],
            "forbidden": [{"pattern": "(?i)jest|mock", "reason": "test defaults"}],
        }
    }
    releases.create(_gated_release(gates=gates))
    controller(namespace)
    releases.wait_phase(APP, "Idle", timeout=30)

    releases.set_tag(APP, "v2")
    blocked = _wait_reason(releases, "Blocked", "ReferenceMissing")
    expected = "Secret app-secrets has no key DATABASE_URL (container app env DATABASE_URL)"
    assert expected in blocked["message"]
    result = _result(blocked, "environment")
    assert result["verdict"] == "fail" and result["evidence"] == [expected]
    assert releases.deployment(f"{APP}-canary") is None
    condition = next(c for c in blocked["conditions"] if c["type"] == "GatesPassed")
    assert condition["status"] == "False"
    releases.wait_events(APP, "ReleaseBlocked")

    _patch_secret(releases, "app-secrets", {"DATABASE_URL": "postgresql://db.prod/app"})
    done = releases.wait_phase(APP, "Succeeded", timeout=120)
    assert done["stableTag"] == "v2"
    assert _result(done, "environment")["verdict"] == "pass"
    releases.wait_events(APP, "GatesPassed", "ReleaseStarted", "Promoted")


def _hook(behavior: str | None) -> dict[str, Any]:
    """The hook; behavior None (a merge-patch null) removes the label: the Job then succeeds."""
    labels = {POD_BEHAVIOR_LABEL: behavior}
    return {
        "preRollout": {
            "timeout": "2m",
            "job": {
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "migrate", "image": "registry.example.com/payments:{tag}"}
                        ]
                    },
                }
            },
        }
    }


def test_failed_pre_rollout_job_blocks_the_release(
    releases: Releases, namespace: str, controller: ControllerFactory
) -> None:
    releases.create_deployment(APP, 2, IMAGE.format("v1"))
    releases.create(_gated_release(hooks=_hook("fail")))
    controller(namespace)
    releases.wait_phase(APP, "Idle", timeout=30)

    releases.set_tag(APP, "v2")
    waiting = _wait_reason(releases, "Waiting", "PreRolloutHookRunning", timeout=60)
    [run] = waiting["gates"]["hooks"]
    assert run["hook"] == "preRollout" and run["tag"] == "v2"
    batch = client.BatchV1Api(releases.core.api_client)
    # status is written before the actions, so the Job may follow the Waiting phase by a moment
    job = wait_for(lambda: batch.read_namespaced_job(run["job"], namespace), 30, "the hook Job")
    container = job.spec.template.spec.containers[0]
    assert container.image == "registry.example.com/payments:v2"
    env = {e.name: e.value for e in container.env}
    assert env["CANARY_TAG"] == "v2" and env["CANARY_HOOK"] == "preRollout"
    assert job.metadata.owner_references[0].kind == "CanaryRelease"

    blocked = _wait_reason(releases, "Blocked", "PreRolloutHookFailed", timeout=90)
    assert f"Job {run['job']} failed" in blocked["message"]
    assert releases.deployment(f"{APP}-canary") is None
    releases.wait_events(APP, "HookFailed")

    # Fix the hook, delete the failed Job: the controller runs it again and starts.
    releases.patch(APP, {"spec": {"hooks": _hook(None)}})
    generation = releases.get(APP)["metadata"]["generation"]
    wait_for(
        lambda: releases.status(APP).get("observedGeneration") == generation,
        30,
        "the controller to read the fixed hook",
    )
    batch.delete_namespaced_job(run["job"], namespace, propagation_policy="Background")
    done = releases.wait_phase(APP, "Succeeded", timeout=150)
    assert done["stableTag"] == "v2"
    assert done["gates"]["hooks"][-1]["state"] == "Succeeded"


OLD_SCHEMA = "CREATE TABLE security_keys (id serial PRIMARY KEY, name text NOT NULL);"
SEED_MIGRATIONS = """
ALTER TABLE security_keys ADD COLUMN IF NOT EXISTS key_hash VARCHAR(255);
CREATE TABLE IF NOT EXISTS crypto_prices (
  id VARCHAR(255) PRIMARY KEY,
  currency VARCHAR(10) NOT NULL,
  price DECIMAL(20, 8) NOT NULL,
  cached_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP DEFAULT NOW(),
  updated_at TIMESTAMP DEFAULT NOW()
);
"""
SCHEMA_GATES = {
    "database": {"secretKeyRef": {"name": "app-db", "key": "url"}, "connectTimeout": "2s"},
    "schema": {
        "tables": [
            {"name": "security_keys", "columns": [{"name": "key_hash", "type": "VARCHAR(255)"}]},
            {
                "name": "crypto_prices",
                "columns": [{"name": "price", "type": "DECIMAL(20, 8)"}, {"name": "cached_at"}],
            },
        ]
    },
    "migrations": {"lint": {"configMapRef": {"name": "payments-migrations"}}},
}


def test_database_down_then_missing_migrations_block_until_the_seed_migrations_run(
    releases: Releases, namespace: str, controller: ControllerFactory, database: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(OLD_SCHEMA)
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/app"
    _secret(releases, "app-db", {"url": down})
    migrations = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="payments-migrations"),
        data={"001_seed.sql": SEED_MIGRATIONS},
    )
    releases.core.create_namespaced_config_map(namespace, migrations)
    releases.create_deployment(APP, 2, IMAGE.format("v1"))
    releases.create(_gated_release(gates=SCHEMA_GATES))
    controller(namespace)
    releases.wait_phase(APP, "Idle", timeout=30)

    releases.set_tag(APP, "v2")
    blocked = _wait_reason(releases, "Blocked", "DatabaseUnreachable")
    assert "database unreachable" in blocked["message"] and "127.0.0.1" in blocked["message"]
    assert _result(blocked, "migration-lint")["verdict"] == "pass"
    assert down not in str(blocked)  # the connection string never reaches status

    _patch_secret(releases, "app-db", {"url": database})
    mismatch = _wait_reason(releases, "Blocked", "SchemaMismatch")
    assert _result(mismatch, "schema")["evidence"] == [
        "column public.security_keys.key_hash does not exist",
        "table public.crypto_prices does not exist",
    ]
    assert releases.deployment(f"{APP}-canary") is None

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SEED_MIGRATIONS)
    done = releases.wait_phase(APP, "Succeeded", timeout=120)
    assert _result(done, "schema")["verdict"] == "pass"


def _image_prints(cluster: LocalCluster, root: pathlib.Path, files: dict[str, str]) -> None:
    """Lay out /app/migrations as the image holds it; its extraction output is the pod log."""
    migrations = root / "app" / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    for old in migrations.iterdir():
        old.unlink()
    for name, sql in files.items():
        (migrations / name).write_text(sql)
    printed = subprocess.run(
        ["sh", "-c", EXTRACT_SCRIPT, "sh", str(migrations)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cluster.pod_log_file.write_text(cri_log(printed))


ADD_NOTE = "ALTER TABLE orders ADD COLUMN note text;\n"
DROP_LEGACY = "-- v2 cleans up\nALTER TABLE orders DROP COLUMN legacy;\n"


def test_migration_files_in_the_image_are_linted_and_a_breaking_one_blocks(
    releases: Releases,
    namespace: str,
    controller: ControllerFactory,
    cluster: LocalCluster,
    tmp_path: pathlib.Path,
) -> None:
    image_root = tmp_path / "image"
    lint = {"lint": {"image": {"path": "/app/migrations", "timeout": "1m"}}}
    releases.create_deployment(APP, 2, IMAGE.format("v1"))
    releases.create(_gated_release(gates={"migrations": lint}))
    controller(namespace)
    releases.wait_phase(APP, "Idle", timeout=30)

    _image_prints(
        cluster,
        image_root,
        {"001_note.sql": ADD_NOTE, "002_legacy.sql": DROP_LEGACY, "README.md": "not SQL"},
    )
    releases.set_tag(APP, "v2")
    blocked = _wait_reason(releases, "Blocked", "UnsafeMigration")
    result = _result(blocked, "migration-lint")
    assert result["verdict"] == "fail"
    assert any(
        line.startswith("002_legacy.sql:2: breaking") and "DROP COLUMN" in line
        for line in result["evidence"]
    ), result["evidence"]
    assert not any(line.startswith("001_note.sql") for line in result["evidence"])
    assert releases.deployment(f"{APP}-canary") is None
    jobs = releases.batch.list_namespaced_job(namespace).items
    assert len(jobs) == 1
    container = jobs[0].spec.template.spec.containers[0]
    assert container.name == EXTRACT_CONTAINER
    assert container.image == IMAGE.format("v2")  # the release's image, at its tag
    assert container.command == ["sh", "-c", EXTRACT_SCRIPT, "sh", "/app/migrations"]

    # v3 ships only the additive migration: its own Job, its own verdict, and it starts.
    _image_prints(cluster, image_root, {"001_note.sql": ADD_NOTE})
    releases.set_tag(APP, "v3")
    done = releases.wait_phase(APP, "Succeeded", timeout=120)
    assert _result(done, "migration-lint")["verdict"] == "pass"
    # v3's own Job; v2's, finished and recorded by no hook run, is deleted as v3 starts
    [job] = releases.batch.list_namespaced_job(namespace).items
    assert (
        job.metadata.annotations["canary.dev/tag"] == "v3"
        and job.metadata.name != jobs[0].metadata.name
    )
