"""Cross-reference rules on the Terraform (python-hcl2), and proof that each can fail.

Each rule holds on the repository; each break below copies the repository, breaks one
rule on purpose, and shows that its checker reports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.terraform import tfcheck
from tests.terraform.edits import append, delete_block, replace

MODULES = Path("terraform/modules")
EXAMPLE = Path("terraform/envs/example/main.tf")
PUBSUB = MODULES / "pubsub/main.tf"
FUNCTION = MODULES / "function/main.tf"
FIRESTORE = MODULES / "firestore/main.tf"
MONITORING = MODULES / "monitoring/main.tf"
JOBS = Path(tfcheck.SCHEDULER_JOBS)


@pytest.mark.parametrize("rule", sorted(tfcheck.RULES))
def test_rule_holds(repo_root: Path, rule: str) -> None:
    assert tfcheck.RULES[rule](repo_root) == []


def test_contract_names_are_read_as_the_code_has_them(repo_root: Path) -> None:
    from fleetops.contract import names

    read = tfcheck.contract_names(repo_root)
    assert read["topics"] == tuple(names.ALL_TOPICS)
    assert read["collections"] == tuple(names.ALL_COLLECTIONS)


def test_indexes_are_derived_from_the_queries(repo_root: Path) -> None:
    needs = tfcheck.firestore_queries(repo_root)
    assert needs.unread == []
    assert ("operations", frozenset({"instance", "status"}), ("created_at", "ASCENDING")) in (
        needs.composite
    )
    assert set(tfcheck.contract_names(repo_root)["collections"]) <= needs.collections


def test_every_function_manifest_is_deployed_by_the_example(repo_root: Path) -> None:
    """The set the example root deploys is the set of manifests: by construction."""
    manifests = tfcheck.function_manifests(repo_root)
    assert manifests, "no functions/*/function.json"
    main_py = {p.parent.name for p in (repo_root / "functions").glob("*/main.py")}
    assert main_py <= set(manifests)


# ------------------------------------------------------------------------- breaks


@dataclass(frozen=True)
class Break:
    rule: str
    what: str
    edit: Callable[[Path], None]
    expect: str


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _edit_manifest(name: str, **changes: object) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / "functions" / name / "function.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data.update(changes)
        path.write_text(json.dumps(data), encoding="utf-8")

    return edit


def _edit_jobs(change: Callable[[list[dict[str, object]]], None]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / JOBS
        jobs = json.loads(path.read_text(encoding="utf-8"))
        change(jobs)
        path.write_text(json.dumps(jobs), encoding="utf-8")

    return edit


def _first_function(root: Path) -> str:
    return sorted(tfcheck.function_manifests(root))[0]


def _rename_entry_point(root: Path) -> None:
    _edit_manifest(_first_function(root), entry_point="no_such_function")(root)


def _drop_decorator(root: Path) -> None:
    name = _first_function(root)
    main = root / "functions" / name / "main.py"
    text = main.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("@functions_framework.")]
    main.write_text("\n".join(lines) + "\n", encoding="utf-8")


BREAKS = [
    # module layout
    Break(
        "module_layout",
        "variable without description",
        lambda r: replace(
            r / MODULES / "pubsub/variables.tf",
            '  description = "Labels put on every topic and subscription."\n',
            "",
        ),
        "has no description",
    ),
    Break(
        "module_layout",
        "variable without type",
        lambda r: replace(r / MODULES / "scheduler/variables.tf", "  type        = bool\n", ""),
        "has no type",
    ),
    Break(
        "module_layout",
        "module without versions.tf",
        lambda r: (r / MODULES / "apis/versions.tf").unlink(),
        "has no versions.tf",
    ),
    Break(
        "module_layout",
        "google provider not ~> 6",
        lambda r: replace(r / MODULES / "firestore/versions.tf", '"~> 6.0"', '">= 5.0"'),
        "~> 6.x",
    ),
    # references (validate without providers)
    Break(
        "references",
        "undeclared variable",
        lambda r: replace(r / PUBSUB, "labels       = var.labels", "labels       = var.lables"),
        "var.lables",
    ),
    Break(
        "references",
        "unknown module argument",
        lambda r: replace(
            r / EXAMPLE,
            "  paused     = var.scheduler_paused\n",
            "  paused     = var.scheduler_paused\n  pause      = true\n",
        ),
        "passes pause",
    ),
    Break(
        "references",
        "missing module output",
        lambda r: replace(
            r / EXAMPLE, "module.pubsub.dead_letter_topic_id", "module.pubsub.dlq_id"
        ),
        "no output dlq_id",
    ),
    Break(
        "references",
        "required variable unset",
        lambda r: replace(r / EXAMPLE, "  location_id       = var.firestore_location\n", ""),
        "does not set location_id",
    ),
    # functions deployed
    Break(
        "functions_deployed",
        "main.py without function.json",
        lambda r: _write(r / "functions/ghost/main.py", "def ghost(request):\n    return 'boo'\n"),
        "functions/ghost",
    ),
    Break(
        "functions_deployed",
        "entry point missing from main.py",
        _rename_entry_point,
        "no_such_function",
    ),
    Break(
        "functions_deployed",
        "entry point without its decorator",
        _drop_decorator,
        "is not decorated",
    ),
    Break(
        "functions_deployed",
        "root no longer globs the manifests",
        lambda r: replace(r / EXAMPLE, '"*/function.json"', '"*/manifest.json"'),
        "not matched",
    ),
    Break(
        "functions_deployed",
        "trigger topic outside the contract",
        lambda r: _edit_manifest(_first_function(r), trigger_topic="fleetops-nope")(r),
        "not a contract topic",
    ),
    # topics
    Break(
        "topics",
        "a topic renamed in Terraform",
        lambda r: replace(r / PUBSUB, '"fleetops-steps"', '"fleetops-step"'),
        "fleetops-step",
    ),
    Break(
        "topics",
        "a contract topic Terraform lacks",
        lambda r: replace(
            r / tfcheck.NAMES_PY,
            "    TOPIC_DEAD_LETTER,\n)",
            '    TOPIC_DEAD_LETTER,\n    "fleetops-audit",\n)',
        ),
        "fleetops-audit is not declared",
    ),
    Break(
        "topics",
        "a topic name Terraform computes",
        lambda r: replace(
            r / PUBSUB, "  name         = each.value\n", '  name         = "x-${each.value}"\n'
        ),
        "not known statically",
    ),
    # firestore
    Break(
        "firestore",
        "index on a collection not in the contract",
        lambda r: replace(r / FIRESTORE, 'collection = "operations"', 'collection = "operation"'),
        "not a collection the code names",
    ),
    Break(
        "firestore",
        "a needed index removed",
        lambda r: delete_block(
            r / FIRESTORE, "# Operations in one status", 'resource "google_firestore_index"'
        ),
        "missing composite index",
    ),
    Break(
        "firestore",
        "the code gains a query without its index",
        lambda r: append(
            r / "shared/fleetops/adapters/firestore_store.py",
            "\n\ndef by_customer(db: Any, customer: str) -> Any:\n"
            "    return (\n"
            "        db.collection(COLLECTION_INSTANCES)\n"
            '        .where(filter=firestore.FieldFilter("customer", "==", customer))\n'
            '        .order_by("created_at")\n'
            "    )\n",
        ),
        "missing composite index on instances",
    ),
    Break(
        "firestore",
        "the code gains a collection-group query without its index",
        lambda r: append(
            r / "shared/fleetops/adapters/firestore_store.py",
            "\n\ndef history_since(db: Any, since: Any) -> Any:\n"
            "    return db.collection_group(SUBCOLLECTION_HISTORY).where(\n"
            '        filter=firestore.FieldFilter("at", ">=", since)\n'
            "    )\n",
        ),
        "missing COLLECTION_GROUP index on history.at",
    ),
    Break(
        "firestore",
        "the code gains a query nobody can derive",
        lambda r: append(
            r / "shared/fleetops/adapters/firestore_store.py",
            "\n\ndef late(db: Any, since: Any) -> Any:\n"
            "    return (\n"
            "        db.collection(COLLECTION_OPERATIONS)\n"
            '        .where(filter=firestore.FieldFilter("updated_at", "<", since))\n'
            '        .order_by("created_at")\n'
            "    )\n",
        ),
        "add its composite index by hand",
    ),
    Break(
        "firestore",
        "TTL on the wrong field",
        lambda r: replace(r / FIRESTORE, 'field      = "expire_at"', 'field      = "expires_at"'),
        "no TTL policy",
    ),
    # subscriptions
    Break(
        "subscriptions",
        "retry_policy deleted",
        lambda r: delete_block(r / PUBSUB, '"events_audit" {', "retry_policy {"),
        "has no retry_policy",
    ),
    Break(
        "subscriptions",
        "dead_letter_policy deleted",
        lambda r: delete_block(r / PUBSUB, '"events_audit" {', "dead_letter_policy {"),
        "has no dead_letter_policy",
    ),
    Break(
        "subscriptions",
        "dead-letter policy dropped unconditionally",
        lambda r: replace(
            r / FUNCTION,
            "for_each = local.consumes_dead_letter_topic ? [] : [var.dead_letter_topic_id]",
            "for_each = []",
        ),
        "dynamic dead_letter_policy",
    ),
    Break(
        "subscriptions",
        "five delivery attempts changed",
        lambda r: replace(r / FUNCTION, "max_delivery_attempts = 5", "max_delivery_attempts = 10"),
        "not 5",
    ),
    Break(
        "subscriptions",
        "service agent cannot subscribe",
        lambda r: delete_block(
            r / FUNCTION,
            "# The Pub/Sub service agent must",
            'resource "google_pubsub_subscription_iam_member"',
        ),
        "roles/pubsub.subscriber",
    ),
    Break(
        "subscriptions",
        "service agent cannot publish dead letters",
        lambda r: delete_block(
            r / PUBSUB,
            "# Dead-letter policies publish",
            'resource "google_pubsub_topic_iam_member"',
        ),
        "roles/pubsub.publisher on the dead-letter topic",
    ),
    # push auth
    Break(
        "push_auth",
        "oidc_token deleted",
        lambda r: delete_block(r / FUNCTION, "push_config {", "oidc_token {"),
        "no oidc_token",
    ),
    Break(
        "push_auth",
        "push account cannot invoke",
        lambda r: delete_block(
            r / FUNCTION,
            "# The identity Pub/Sub signs",
            'resource "google_cloud_run_v2_service_iam_member" "pusher"',
        ),
        "no roles/run.invoker",
    ),
    Break(
        "push_auth",
        "endpoint without the topic path",
        lambda r: replace(
            r / FUNCTION,
            '"${local.function_uri}/projects/${var.project_id}/topics/${var.trigger_topic}"',
            "local.function_uri",
        ),
        "/projects/P/topics/T",
    ),
    # identities
    Break(
        "function_identities",
        "runs as the default compute account",
        lambda r: replace(
            r / FUNCTION,
            "service_account_email            = google_service_account.runtime.email",
            "service_account_email            = "
            '"${var.project_number}-compute@developer.gserviceaccount.com"',
        ),
        "not its own service account",
    ),
    Break(
        "function_identities",
        "no build account",
        lambda r: replace(r / FUNCTION, "    service_account = var.build_service_account_id\n", ""),
        "build_config.service_account",
    ),
    # scheduler
    Break(
        "scheduler",
        "job targets an undeclared topic",
        _edit_jobs(lambda jobs: jobs[0].update(topic="fleetops-nope")),
        "not a declared topic",
    ),
    Break(
        "scheduler",
        "two jobs with one name",
        _edit_jobs(lambda jobs: jobs.append(dict(jobs[0]))),
        "appears twice",
    ),
    Break(
        "scheduler",
        "root reads another job file",
        lambda r: replace(r / EXAMPLE, "scheduler_jobs.json", "jobs.json"),
        "no call of modules/scheduler",
    ),
    Break(
        "scheduler",
        "http target without a token",
        lambda r: replace(
            r / MODULES / "scheduler/main.tf",
            "  pubsub_target {",
            '  http_target {\n    uri = "https://example.com"\n  }\n\n  pubsub_target {',
        ),
        "without oidc_token",
    ),
    # monitoring
    Break(
        "monitoring",
        "notify on open only",
        lambda r: replace(r / MONITORING, '["OPENED", "CLOSED"]', '["OPENED"]'),
        "OPENED and CLOSED",
    ),
    Break(
        "monitoring",
        "alert policy without the instance label",
        lambda r: replace(
            r / MONITORING, "{ fleetops_instance = each.key },", "{ instance = each.key },"
        ),
        "fleetops_instance",
    ),
    Break(
        "monitoring",
        "Monitoring cannot publish",
        lambda r: delete_block(
            r / MONITORING, "# Monitoring publishes as", 'resource "google_pubsub_topic_iam_member"'
        ),
        "cannot publish",
    ),
    Break(
        "monitoring",
        "API open to someone else",
        lambda r: replace(
            r / EXAMPLE,
            '? ["group:${var.engineers_group}"] : []',
            '? ["group:everyone@example.com"] : []',
        ),
        "engineers_group",
    ),
]


@pytest.mark.parametrize("broken", BREAKS, ids=[f"{b.rule}:{b.what}" for b in BREAKS])
def test_rule_can_fail(repo_copy: Callable[[], Path], broken: Break) -> None:
    root = repo_copy()
    assert tfcheck.RULES[broken.rule](root) == [], "the copy must pass before it is broken"
    broken.edit(root)
    problems = tfcheck.RULES[broken.rule](root)
    assert any(broken.expect in p for p in problems), problems


def test_every_rule_has_a_break() -> None:
    assert {b.rule for b in BREAKS} == set(tfcheck.RULES)
