"""What gets deployed to AWS: the CloudFormation templates and the Lambda IAM policies.

* `chalice package --stage prod` (plain, and merged with infrastructure/single-stack.yaml)
  and infrastructure/template.yaml must pass cfn-lint (errors and warnings);
* the single-stack merge must keep its promises (stream from the table, partial batch
  responses, dead-letter queue, real function names) and its copy of the data resources
  must match infrastructure/template.yaml;
* .chalice/policy-<stage>.json must allow every AWS call the code makes, on the resources
  of its own stage only, with no wildcard actions.

Packaging needs the real app importable without AWS credentials and without network
access to AWS (Chalice imports app.py to read the routes and the stream handler). The
first run downloads the Lambda dependencies from PyPI into .chalice/deployments/ (Chalice's
own cache, git-ignored); later runs reuse them.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
CHALICE_DIR = ROOT / ".chalice"
DATA_TEMPLATE = ROOT / "infrastructure" / "template.yaml"
MERGE_TEMPLATE = ROOT / "infrastructure" / "single-stack.yaml"
DEPLOY_SCRIPT = ROOT / "infrastructure" / "deploy.sh"
STAGES = ("dev", "prod")
PACKAGED_STAGE = "prod"

# Regions the templates are linted for (resource and property availability differ).
LINT_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]

# Example identifiers used to probe the policies.
REGION, ACCOUNT = "eu-west-1", "123456789012"
FUNCTIONS = ("api_handler", "process_events")

# Chalice 1.34 defect, plain `chalice package` only: the API handler's log group is named
# after `${ApiHandler}` while the function's logical id is `APIHandler`, so CloudFormation
# would reject the template. infrastructure/single-stack.yaml overrides that property;
# test_single_stack_template_lints_clean proves the override removes these findings.
CHALICE_LOG_GROUP_DEFECT = {
    "rules": {"E1019", "E3030", "E3031"},
    "path": ["Resources", "ApiHandlerLogGroup", "Properties", "LogGroupName"],
}


def _config() -> dict:
    return json.loads((CHALICE_DIR / "config.json").read_text())


def _stage_env(stage: str) -> dict[str, str]:
    config = _config()
    env = dict(config.get("environment_variables", {}))
    env.update(config["stages"][stage].get("environment_variables", {}))
    return env


def _policy(stage: str) -> dict:
    return json.loads((CHALICE_DIR / f"policy-{stage}.json").read_text())


def _load_template(path: Path) -> dict:
    template, matches = decode(str(path))
    assert not matches, [str(m) for m in matches]
    return template


def _resolve_sub(value, stage: str) -> str:
    """The physical name of a `!Sub "mercurio-${Stage}-..."` (or a plain string)."""
    if isinstance(value, dict):
        (key, text), = value.items()
        assert key == "Fn::Sub", value
        return text.replace("${Stage}", stage)
    return value


def _physical_names(resource_type: str, name_property: str, stage: str) -> set[str]:
    resources = _load_template(DATA_TEMPLATE)["Resources"]
    return {
        _resolve_sub(r["Properties"][name_property], stage)
        for r in resources.values()
        if r["Type"] == resource_type
    }


def _findings(path: Path) -> list:
    """cfn-lint errors and warnings (informational findings are not enforced)."""
    matches = lint_file(path, config=ManualArgs(regions=LINT_REGIONS))
    return [m for m in matches if m.rule.severity in ("error", "warning")]


def _describe(findings) -> list[str]:
    return [f"{m.rule.id} {m.path_string or m.linenumber}: {m.message}" for m in findings]


def _is_chalice_log_group_defect(match) -> bool:
    path = [str(p) for p in (match.path or [])]
    return (match.rule.id in CHALICE_LOG_GROUP_DEFECT["rules"]
            and path[:4] == CHALICE_LOG_GROUP_DEFECT["path"])


# --- chalice package ------------------------------------------------------------------------

def _chalice_command() -> list[str]:
    beside_python = Path(sys.executable).with_name("chalice")
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("chalice")
    if not found:
        pytest.fail("the chalice CLI is not installed (pip install -r requirements-dev.txt)")
    return [found]


def _chalice_package(out_dir: Path, *extra: str) -> Path:
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # Chalice needs a region, not an account
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    result = subprocess.run(
        [*_chalice_command(), "package", "--stage", PACKAGED_STAGE, *extra, str(out_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, f"chalice package failed:\n{result.stdout}\n{result.stderr}"
    templates = [p for p in out_dir.iterdir() if p.name in ("sam.json", "sam.yaml")]
    assert len(templates) == 1, list(out_dir.iterdir())
    return templates[0]


@pytest.fixture(scope="module")
def plain_package(tmp_path_factory) -> Path:
    return _chalice_package(tmp_path_factory.mktemp("package-plain"))


@pytest.fixture(scope="module")
def single_stack_package(tmp_path_factory) -> Path:
    return _chalice_package(tmp_path_factory.mktemp("package-single-stack"),
                            "--merge-template", str(MERGE_TEMPLATE))


# --- cfn-lint -------------------------------------------------------------------------------

def test_data_template_lints_clean():
    assert _describe(_findings(DATA_TEMPLATE)) == []


def test_plain_chalice_package_lints_clean_apart_from_the_chalice_log_group_defect(plain_package):
    unexpected = [m for m in _findings(plain_package) if not _is_chalice_log_group_defect(m)]
    assert _describe(unexpected) == []


def test_single_stack_template_lints_clean(single_stack_package):
    assert _describe(_findings(single_stack_package)) == []


# --- what the packaged templates contain -------------------------------------------------

def test_packaged_functions_get_the_stage_configuration(plain_package):
    template = _load_template(plain_package)
    resources = template["Resources"]
    env = _stage_env(PACKAGED_STAGE)
    policy = _policy(PACKAGED_STAGE)
    for logical, memory, timeout in (("APIHandler", 512, 29), ("ProcessEvents", 1024, 120)):
        props = resources[logical]["Properties"]
        assert props["MemorySize"] == memory and props["Timeout"] == timeout, logical
        assert props["Tracing"] == "Active", logical
        assert props["Environment"]["Variables"] == env, logical
        # autogen_policy is off: each function's role carries exactly the hand-written policy.
        role = props["Role"]["Fn::GetAtt"][0]
        documents = [p["PolicyDocument"] for p in resources[role]["Properties"]["Policies"]]
        assert documents == [policy], logical
    for name in ("MERCURIO_STAGE", "MERCURIO_EVENTS_TABLE", "MERCURIO_CONTACTS_TABLE",
                 "MERCURIO_IDENTITIES_TABLE", "MERCURIO_EVENTS_STREAM_ARN", "MERCURIO_SOURCES",
                 "MERCURIO_ADMIN_TOKEN_PARAMETER", "MERCURIO_EVENT_TTL_DAYS", "MERCURIO_IP_TRUNCATE",
                 "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"):
        assert env.get(name), name
    assert "MERCURIO_ADMIN_TOKEN" not in env, "on AWS the admin token lives in SSM only"
    assert template["Outputs"]["EndpointURL"]["Value"]["Fn::Sub"].endswith("/api/")


def test_single_stack_wires_the_stream_processor(single_stack_package):
    resources = _load_template(single_stack_package)["Resources"]
    for logical, resource in resources.items():
        assert "Type" in resource, f"{logical}: the merge template names a resource Chalice did not generate"
    events = resources["ProcessEvents"]["Properties"]["Events"]
    assert list(events) == ["ProcessEventsDynamodbEventSource"], list(events)
    source = events["ProcessEventsDynamodbEventSource"]
    assert source["Type"] == "DynamoDB"
    props = source["Properties"]
    assert props["Stream"] == {"Fn::GetAtt": ["EventsTable", "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == 100 and props["StartingPosition"] == "TRIM_HORIZON"
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    script_retries = re.search(r"STREAM_MAX_RETRY_ATTEMPTS=(\d+)", DEPLOY_SCRIPT.read_text())
    assert script_retries and props["MaximumRetryAttempts"] == int(script_retries.group(1)), \
        "deploy.sh and single-stack.yaml configure the stream retries differently"
    for logical, function in (("APIHandler", "api_handler"), ("ProcessEvents", "process_events")):
        props = resources[logical]["Properties"]
        assert props["FunctionName"] == {"Fn::Sub": f"mercurio-${{Stage}}-{function}"}
        variables = props["Environment"]["Variables"]
        assert variables["MERCURIO_EVENTS_STREAM_ARN"] == {"Fn::GetAtt": ["EventsTable", "StreamArn"]}
        assert variables["MERCURIO_EVENTS_TABLE"] == {"Ref": "EventsTable"}


def test_single_stack_copy_of_the_data_resources_matches_the_data_template():
    data = _load_template(DATA_TEMPLATE)
    merge = _load_template(MERGE_TEMPLATE)
    assert merge["Parameters"] == data["Parameters"]
    for logical, resource in data["Resources"].items():
        assert merge["Resources"].get(logical) == resource, f"{logical} differs between the two files"
    for name, output in data["Outputs"].items():
        assert merge["Outputs"].get(name) == output, f"output {name} differs between the two files"


# --- IAM policies ---------------------------------------------------------------------------

def _iam_catalogue() -> dict:
    """cfn-lint's copy of the IAM service authorization reference: service → action → resources."""
    import cfnlint.data.AdditionalSpecs as specs

    return json.loads((Path(specs.__file__).parent / "Policies.json").read_text())


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _allowing(policy: dict, action: str, resource: str) -> list[dict]:
    """The statements that allow `action` on `resource` (IAM wildcard matching; no Deny used)."""
    found = []
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        actions = [a.lower() for a in _as_list(statement["Action"])]
        if not any(fnmatch.fnmatchcase(action.lower(), a) for a in actions):
            continue
        if any(fnmatch.fnmatchcase(resource, r) for r in _as_list(statement["Resource"])):
            found.append(statement)
    return found


def _table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


# API call → the IAM actions it is authorized by. TransactWriteItems has no action of its own:
# each Put/Update/ConditionCheck inside it is authorized as PutItem/UpdateItem/ConditionCheckItem.
TABLE_CALLS = {
    "BatchWriteItem": ["dynamodb:BatchWriteItem"],
    "PutItem": ["dynamodb:PutItem"],
    "UpdateItem": ["dynamodb:UpdateItem"],
    "GetItem": ["dynamodb:GetItem"],
    "BatchGetItem": ["dynamodb:BatchGetItem"],
    "Query": ["dynamodb:Query"],
    "TransactWriteItems": ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"],
    "ConditionCheckItem": ["dynamodb:ConditionCheckItem"],
    "DescribeTable": ["dynamodb:DescribeTable"],
}
STREAM_ACTIONS = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                  "dynamodb:ListStreams"]
LOG_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
TRACE_ACTIONS = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
# Nothing in the code deletes or scans; granting it would only widen what a bug could do.
NEVER_GRANTED = ["dynamodb:DeleteItem", "dynamodb:Scan", "dynamodb:DeleteTable",
                 "dynamodb:UpdateTable", "ssm:PutParameter", "kms:Encrypt"]


@pytest.mark.parametrize("stage", STAGES)
def test_policy_allows_every_call_the_code_makes(stage):
    policy = _policy(stage)
    env = _stage_env(stage)
    tables = _physical_names("AWS::DynamoDB::Table", "TableName", stage)
    assert {env["MERCURIO_EVENTS_TABLE"], env["MERCURIO_CONTACTS_TABLE"],
            env["MERCURIO_IDENTITIES_TABLE"]} == tables
    missing = []

    def need(action: str, resource: str) -> list[dict]:
        statements = _allowing(policy, action, resource)
        if not statements:
            missing.append(f"{action} on {resource}")
        return statements

    for call, actions in TABLE_CALLS.items():
        for action in actions:
            for table in sorted(tables):
                need(action, _table_arn(table))
    stream = _table_arn(env["MERCURIO_EVENTS_TABLE"]) + "/stream/2026-01-01T00:00:00.000"
    for action in STREAM_ACTIONS:
        need(action, stream)

    parameter_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{env['MERCURIO_ADMIN_TOKEN_PARAMETER']}"
    need("ssm:GetParameter", parameter_arn)
    for statement in need("kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b3e9a5c-1111-2222-3333-444455556666"):
        conditions = statement.get("Condition", {}).get("StringLike", {})
        assert fnmatch.fnmatchcase(f"ssm.{REGION}.amazonaws.com", conditions.get("kms:ViaService", "")), \
            "kms:Decrypt must be limited to calls made through SSM"
        assert fnmatch.fnmatchcase(parameter_arn, conditions.get("kms:EncryptionContext:PARAMETER_ARN", "")), \
            "kms:Decrypt must be limited to the admin token parameter"

    for function in FUNCTIONS:
        group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/mercurio-{stage}-{function}"
        need("logs:CreateLogGroup", group)
        for action in LOG_ACTIONS[1:]:
            need(action, f"{group}:log-stream:2026/01/01/[$LATEST]0123456789abcdef")
    for action in TRACE_ACTIONS:
        need(action, "*")
    for queue in _physical_names("AWS::SQS::Queue", "QueueName", stage):
        # The event source mapping reports failed batches through the function's role.
        need("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}")
    assert missing == []


@pytest.mark.parametrize("stage", STAGES)
def test_policy_grants_nothing_more(stage):
    policy = _policy(stage)
    catalogue = _iam_catalogue()
    other = [s for s in STAGES if s != stage]
    env = _stage_env(stage)
    problems = []
    for statement in policy["Statement"]:
        sid = statement.get("Sid", "?")
        if statement["Effect"] != "Allow" or {"NotAction", "NotResource", "Principal"} & set(statement):
            problems.append(f"{sid}: only plain Allow statements are expected")
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        for action in actions:
            service, _, name = action.partition(":")
            if "*" in action or "?" in action:
                problems.append(f"{sid}: wildcard action {action}")
            elif name.lower() not in catalogue.get(service, {}).get("Actions", {}):
                problems.append(f"{sid}: {action} is not an IAM action")
            elif "*" in resources and catalogue[service]["Actions"][name.lower()].get("Resources"):
                problems.append(f"{sid}: {action} supports resource-level permissions but is granted on *")
        for resource in resources:
            for other_stage in other:
                if f"mercurio-{other_stage}-" in resource or f"/mercurio/{other_stage}/" in resource:
                    problems.append(f"{sid}: {resource} belongs to stage {other_stage}")
    for action in NEVER_GRANTED:
        if _allowing(policy, action, _table_arn(env["MERCURIO_EVENTS_TABLE"])) or \
                _allowing(policy, action, "*"):
            problems.append(f"{action} is granted")
    for other_stage in other:
        if _allowing(policy, "dynamodb:GetItem", _table_arn(f"mercurio-{other_stage}-events")):
            problems.append(f"reads the {other_stage} tables")
    assert problems == []


@pytest.mark.parametrize("stage", STAGES)
def test_policy_resources_name_resources_the_templates_define(stage):
    tables = _physical_names("AWS::DynamoDB::Table", "TableName", stage)
    queues = _physical_names("AWS::SQS::Queue", "QueueName", stage)
    env = _stage_env(stage)
    unknown = []
    for statement in _policy(stage)["Statement"]:
        for resource in _as_list(statement["Resource"]):
            if resource.startswith("arn:aws:dynamodb:"):
                match = re.fullmatch(r"arn:aws:dynamodb:\*:\*:table/([^/]+)(/stream/\*)?", resource)
                if not match or match.group(1) not in tables:
                    unknown.append(resource)
            elif resource.startswith("arn:aws:sqs:"):
                match = re.fullmatch(r"arn:aws:sqs:\*:\*:([^:]+)", resource)
                if not match or match.group(1) not in queues:
                    unknown.append(resource)
            elif resource.startswith("arn:aws:ssm:"):
                if resource != f"arn:aws:ssm:*:*:parameter{env['MERCURIO_ADMIN_TOKEN_PARAMETER']}":
                    unknown.append(resource)
    assert unknown == []


def test_stage_policies_differ_only_by_stage_name():
    prod = json.dumps(_policy("prod"), sort_keys=True)
    dev = json.dumps(_policy("dev"), sort_keys=True)
    assert dev.replace("mercurio-dev-", "mercurio-prod-").replace("/mercurio/dev/", "/mercurio/prod/") == prod


def test_chalice_config_uses_the_hand_written_policies():
    config = _config()
    assert config["app_name"] == "mercurio"
    assert config["autogen_policy"] is False
    for stage in STAGES:
        assert config["stages"][stage]["iam_policy_file"] == f"policy-{stage}.json"
        sources = json.loads(_stage_env(stage)["MERCURIO_SOURCES"])
        assert isinstance(sources, list)
    assert "reserved_concurrency" not in json.dumps(config)


# --- deploy script --------------------------------------------------------------------------

def test_deploy_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(DEPLOY_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(DEPLOY_SCRIPT, os.X_OK), "infrastructure/deploy.sh must be executable"
    assert shutil.which("shellcheck"), "shellcheck is missing: `make test` installs it (apt-get install shellcheck)"
    result = subprocess.run(["shellcheck", str(DEPLOY_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
