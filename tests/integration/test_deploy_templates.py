"""What gets deployed to AWS: the CloudFormation templates and the Lambda IAM policies.

* `chalice package --stage prod` (plain, and merged with infrastructure/single-stack.yaml)
  and infrastructure/template.yaml must pass cfn-lint (errors and warnings);
* the single-stack merge must keep its promises (stream from the table, partial batch
  responses, dead-letter queue, real function names) and its copy of the data resources
  must match infrastructure/template.yaml;
* .chalice/policy-<stage>.json must allow every AWS call the code makes, on the resources
  of its own stage only, with no wildcard actions, and on each table, bucket prefix and
  parameter nothing beyond what the code calls there.

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
ENROLLMENT_RUNNER_ASL = ROOT / "infrastructure" / "enrollment-runner.asl.json"
# `aws cloudformation deploy` sends a template of at most this many bytes in the request;
# a larger one needs --s3-bucket, which the data stack's deploy does not use.
TEMPLATE_BODY_LIMIT = 51_200
STAGES = ("dev", "prod")
PACKAGED_STAGE = "prod"

# Regions the templates are linted for (resource and property availability differ).
LINT_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]

# Example identifiers used to probe the policies.
REGION, ACCOUNT = "eu-west-1", "123456789012"
# Every Lambda function of the app: its name in .chalice/config.json and app.py, the logical
# id Chalice gives it, and the memory (MB) and timeout (s) the stage configuration sets.
FUNCTIONS = {
    "api_handler": ("APIHandler", 512, 29),
    "process_events": ("ProcessEvents", 1024, 120),
    "segment_jobs": ("SegmentJobs", 1024, 600),
    "rfm_thresholds": ("RfmThresholds", 1024, 900),
    "deliver_effects": ("DeliverEffects", 512, 60),
    "send_messages": ("SendMessages", 512, 60),
    "send_transactional_messages": ("SendTransactionalMessages", 512, 60),
    "ses_feedback": ("SesFeedback", 512, 60),
    "broadcast_fanout": ("BroadcastFanout", 512, 60),
    "journey_events": ("JourneyEvents", 512, 60),
    "journey_advance": ("JourneyAdvance", 512, 60),
    "journey_event_waits": ("JourneyEventWaits", 512, 60),
}
# The queue consumers: function → (the data template's queue, FIFO or not).
QUEUE_CONSUMERS = {
    "deliver_effects": ("EffectsQueue", False),
    "send_messages": ("MessagesQueue", False),
    "send_transactional_messages": ("TransactionalMessagesQueue", False),
    "ses_feedback": ("FeedbackQueue", False),
    "broadcast_fanout": ("FanOutQueue", False),
    "journey_events": ("JourneyEventsQueue", True),
    "journey_advance": ("JourneyAdvanceQueue", False),
    "journey_event_waits": ("JourneyEventWaitsQueue", False),
}
# How a policy names the data bucket (`mercurio-<stage>-data-<account id>`): IAM cannot
# know the account id of a static policy file, `?` matches exactly one character.
ACCOUNT_PATTERN = "?" * 12
PLACEHOLDER = "SET-BY-DEPLOY-SCRIPT"

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


def _resolve_sub(value, stage: str, account: str) -> str:
    """The physical name of a `!Sub "mercurio-${Stage}-..."` (or a plain string)."""
    if isinstance(value, dict):
        (key, text), = value.items()
        assert key == "Fn::Sub", value
        value = text.replace("${Stage}", stage).replace("${AWS::AccountId}", account)
    assert "${" not in value, value
    return value


def _physical_names(resource_type: str, name_property: str, stage: str,
                    account: str = ACCOUNT_PATTERN) -> set[str]:
    resources = _load_template(DATA_TEMPLATE)["Resources"]
    return {
        _resolve_sub(r["Properties"][name_property], stage, account)
        for r in resources.values()
        if r["Type"] == resource_type
    }


def _table_variables() -> dict[str, str]:
    """Logical id of each table of the data template → the variable that names it (EventsTable →
    MERCURIO_EVENTS_TABLE)."""
    resources = _load_template(DATA_TEMPLATE)["Resources"]
    return {logical: "MERCURIO_" + re.sub(r"Table$", "", logical).upper() + "_TABLE"
            for logical, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"}


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
    functions = {logical for logical, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions == {logical for logical, _, _ in FUNCTIONS.values()}
    for logical, memory, timeout in FUNCTIONS.values():
        props = resources[logical]["Properties"]
        assert props["MemorySize"] == memory and props["Timeout"] == timeout, logical
        assert props["Tracing"] == "Active", logical
        assert props["Environment"]["Variables"] == env, logical
        # autogen_policy is off: each function's role carries exactly the hand-written policy.
        role = props["Role"]["Fn::GetAtt"][0]
        documents = [p["PolicyDocument"] for p in resources[role]["Properties"]["Policies"]]
        assert documents == [policy], logical
    for name in ("MERCURIO_STAGE", *_table_variables().values(), "MERCURIO_DATA_BUCKET",
                 "MERCURIO_EVENTS_STREAM_ARN", "MERCURIO_SOURCES", "MERCURIO_ADMIN_TOKEN_PARAMETER",
                 "MERCURIO_EVENT_TTL_DAYS", "MERCURIO_IP_TRUNCATE", "MERCURIO_RECHECK_MINUTES",
                 "MERCURIO_EFFECTS_QUEUE", "MERCURIO_DELIVERY_HORIZON_SECONDS",
                 "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"):
        assert env.get(name), name
    assert "MERCURIO_ADMIN_TOKEN" not in env, "on AWS the admin token lives in SSM only"
    assert template["Outputs"]["EndpointURL"]["Value"]["Fn::Sub"].endswith("/api/")
    # The schedules Chalice generates from app.py, which reads the interval from the stage.
    schedules = {logical: [e["Properties"]["Schedule"] for e in resources[logical]["Properties"]["Events"].values()
                           if e["Type"] == "Schedule"]
                 for logical in ("SegmentJobs", "RfmThresholds")}
    assert schedules == {"SegmentJobs": [f"rate({int(env['MERCURIO_RECHECK_MINUTES'])} minutes)"],
                         "RfmThresholds": ["rate(1 day)"]}


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
    # Every function reads the names of this stack's resources, not the config.json values.
    expected = {variable: {"Ref": table} for table, variable in _table_variables().items()}
    expected["MERCURIO_DATA_BUCKET"] = {"Ref": "DataBucket"}
    expected["MERCURIO_EVENTS_STREAM_ARN"] = {"Fn::GetAtt": ["EventsTable", "StreamArn"]}
    expected["MERCURIO_EFFECTS_QUEUE"] = {"Fn::GetAtt": ["EffectsQueue", "QueueName"]}
    expected["MERCURIO_JOURNEY_EVENTS_QUEUE"] = {"Fn::GetAtt": ["JourneyEventsQueue", "QueueName"]}
    expected["MERCURIO_JOURNEY_ADVANCE_QUEUE"] = {"Fn::GetAtt": ["JourneyAdvanceQueue", "QueueName"]}
    expected["MERCURIO_JOURNEY_WAITS_QUEUE"] = {"Fn::GetAtt": ["JourneyEventWaitsQueue", "QueueName"]}
    expected["MERCURIO_ENROLLMENT_RUNNER_ARN"] = {"Ref": "EnrollmentRunner"}
    for function, (logical, _, _) in FUNCTIONS.items():
        props = resources[logical]["Properties"]
        assert props["FunctionName"] == {"Fn::Sub": f"mercurio-${{Stage}}-{function}"}
        variables = props["Environment"]["Variables"]
        assert {name: variables.get(name) for name in expected} == expected, logical
    for logical in ("SegmentJobs", "RfmThresholds"):
        events = resources[logical]["Properties"]["Events"]
        assert [e["Type"] for e in events.values()] == ["Schedule"], logical
    # The effects queue's consumer: from this stack's queue, reporting batch item failures.
    events = resources["DeliverEffects"]["Properties"]["Events"]
    assert list(events) == ["DeliverEffectsSqsEventSource"], list(events)
    queue_source = events["DeliverEffectsSqsEventSource"]
    assert queue_source["Type"] == "SQS"
    assert queue_source["Properties"]["Queue"] == {"Fn::Sub": "${EffectsQueue.Arn}"}
    assert queue_source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue_source["Properties"]["BatchSize"] == 10
    script = DEPLOY_SCRIPT.read_text()
    assert "configure_queue_mapping \"${effects_queue_arn}\"" in script
    assert 'effects_queue_arn="$(stack_output "${data_stack}" EffectsQueueArn)"' in script
    # Every queue consumer: from this stack's queue, reporting batch item failures, with no
    # batching window on the FIFO queue (Lambda refuses one there).
    data_resources = _load_template(DATA_TEMPLATE)["Resources"]
    for function, (queue, fifo) in QUEUE_CONSUMERS.items():
        logical = FUNCTIONS[function][0]
        events = resources[logical]["Properties"]["Events"]
        assert list(events) == [f"{logical}SqsEventSource"], logical
        props = events[f"{logical}SqsEventSource"]["Properties"]
        assert props["Queue"] == {"Fn::Sub": f"${{{queue}.Arn}}"}, logical
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], logical
        assert bool(data_resources[queue]["Properties"].get("FifoQueue")) is fifo, queue
        if fifo:
            assert props.get("MaximumBatchingWindowInSeconds", 0) == 0, logical
            assert props["BatchSize"] <= 10, logical


def test_the_single_stack_template_is_deployed_from_the_artifact_bucket(single_stack_package):
    """`aws cloudformation deploy` refuses a template over 51,200 bytes unless it is given an
    S3 bucket to upload it to; the packaged single stack is far larger."""
    assert len(single_stack_package.read_bytes()) > TEMPLATE_BODY_LIMIT
    script = DEPLOY_SCRIPT.read_text()
    single = script[script.index("deploy_single_stack() {"):script.index("teardown() {")]
    deploy = single[single.index("aws cloudformation deploy"):]
    deploy = deploy[:deploy.index("--no-fail-on-empty-changeset")]
    assert '--template-file "${out_dir}/packaged.yaml"' in deploy
    assert '--s3-bucket "${ARTIFACT_BUCKET}"' in deploy


def test_an_unknown_route_answers_404_with_a_fixed_body_however_the_stage_is_deployed(single_stack_package):
    """API Gateway's default answer to an unknown route is a 403 repeating the request's
    Authorization header; both deploy paths replace it, and the local server matches them."""
    from local.api_server import NOT_FOUND_BODY

    body = _load_template(single_stack_package)["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    response = body["x-amazon-apigateway-gateway-responses"]["MISSING_AUTHENTICATION_TOKEN"]
    assert int(response["statusCode"]) == 404
    template = response["responseTemplates"]["application/json"]
    assert json.loads(template) == NOT_FOUND_BODY and "$" not in template  # nothing of the request
    script = DEPLOY_SCRIPT.read_text()
    assert re.search(r"^NOT_FOUND_STATUS=404$", script, re.M)
    assert json.loads(re.search(r"^NOT_FOUND_BODY='(.*)'$", script, re.M).group(1)) == NOT_FOUND_BODY
    two_stacks = script[script.index("deploy_two_stacks() {"):]
    assert two_stacks.index("install_not_found_response") > two_stacks.index('"${CHALICE}" deploy')


def test_single_stack_copy_of_the_data_resources_matches_the_data_template():
    data = _load_template(DATA_TEMPLATE)
    merge = _load_template(MERGE_TEMPLATE)
    assert merge["Parameters"] == data["Parameters"]
    for logical, resource in data["Resources"].items():
        assert merge["Resources"].get(logical) == resource, f"{logical} differs between the two files"
    for name, output in data["Outputs"].items():
        assert merge["Outputs"].get(name) == output, f"output {name} differs between the two files"


def test_data_template_fits_in_a_deploy_request():
    """The data stack is deployed with `aws cloudformation deploy` and no --s3-bucket, so its
    template (the state machine's definition inline) must fit in the request."""
    assert len(DATA_TEMPLATE.read_bytes()) < TEMPLATE_BODY_LIMIT


# --- the enrollment runner ------------------------------------------------------------------

def test_the_enrollment_runner_is_the_asl_file_with_the_two_queue_urls_substituted():
    resources = _load_template(DATA_TEMPLATE)["Resources"]
    machine = resources["EnrollmentRunner"]
    assert machine["Type"] == "AWS::StepFunctions::StateMachine"
    props = machine["Properties"]
    assert props["StateMachineName"] == {"Fn::Sub": "mercurio-${Stage}-enrollment-runner"}
    assert props["StateMachineType"] == "STANDARD"
    # Inline, character for character the file docs/JOURNEYS.md and test_enrollment_runner.py
    # describe and run (no package step deploys the data stack).
    assert "DefinitionS3Location" not in props and "Definition" not in props
    assert props["DefinitionString"] == ENROLLMENT_RUNNER_ASL.read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", ENROLLMENT_RUNNER_ASL.read_text()))
    assert props["DefinitionSubstitutions"] == {
        "AdvanceQueueUrl": {"Fn::GetAtt": ["JourneyAdvanceQueue", "QueueUrl"]},
        "EventWaitQueueUrl": {"Fn::GetAtt": ["JourneyEventWaitsQueue", "QueueUrl"]},
    }
    assert set(props["DefinitionSubstitutions"]) == placeholders
    assert props["RoleArn"] == {"Fn::GetAtt": ["EnrollmentRunnerRole", "Arn"]}
    # Its role: assumed by Step Functions of this account, sends the two task messages, no more.
    role = resources["EnrollmentRunnerRole"]["Properties"]
    assert "RoleName" not in role, "a named role would need CAPABILITY_NAMED_IAM"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "states.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert statements == [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": [
        {"Fn::GetAtt": ["JourneyAdvanceQueue", "Arn"]}, {"Fn::GetAtt": ["JourneyEventWaitsQueue", "Arn"]}]}]
    assert "ManagedPolicyArns" not in role
    outputs = _load_template(DATA_TEMPLATE)["Outputs"]
    assert outputs["EnrollmentRunnerArn"]["Value"] == {"Ref": "EnrollmentRunner"}


def test_the_journey_queues_and_the_enrollments_table_follow_the_shared_contract():
    resources = _load_template(DATA_TEMPLATE)["Resources"]
    table = resources["EnrollmentsTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["TableName"] == {"Fn::Sub": "mercurio-${Stage}-enrollments"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert props["GlobalSecondaryIndexes"] == [{
        "IndexName": "running",
        "KeySchema": [{"AttributeName": "running_journey", "KeyType": "HASH"},
                      {"AttributeName": "running_node", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"}}]
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        "pk": "S", "sk": "S", "running_journey": "S", "running_node": "S"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}

    def queue(logical):
        return resources[logical]["Properties"]

    events, events_dlq = queue("JourneyEventsQueue"), queue("JourneyEventsDeadLetterQueue")
    assert events["QueueName"] == {"Fn::Sub": "mercurio-${Stage}-journey-events.fifo"}
    assert events_dlq["QueueName"] == {"Fn::Sub": "mercurio-${Stage}-journey-events-dlq.fifo"}
    assert events["FifoQueue"] is True and events["ContentBasedDeduplication"] is False
    assert events_dlq["FifoQueue"] is True
    assert events["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["JourneyEventsDeadLetterQueue", "Arn"]},
                                       "maxReceiveCount": 10}
    for logical, name in (("JourneyAdvanceQueue", "journey-advance"), ("JourneyEventWaitsQueue", "journey-event-waits")):
        props = queue(logical)
        assert props["QueueName"] == {"Fn::Sub": f"mercurio-${{Stage}}-{name}"}
        assert "FifoQueue" not in props
        assert props["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["JourneysDeadLetterQueue", "Arn"]},
                                          "maxReceiveCount": 10}
    assert queue("JourneysDeadLetterQueue")["QueueName"] == {"Fn::Sub": "mercurio-${Stage}-journeys-dlq"}
    # Consumed by Lambda functions of 60 s: visibility six times that, as for the other queues.
    lambda_timeout = _config()["lambda_functions"]["deliver_effects"]["lambda_timeout"]
    for logical in ("JourneyEventsQueue", "JourneyAdvanceQueue", "JourneyEventWaitsQueue"):
        assert queue(logical)["VisibilityTimeout"] == 6 * lambda_timeout == queue("EffectsQueue")["VisibilityTimeout"]
        assert queue(logical)["SqsManagedSseEnabled"] is True


# --- IAM policies ---------------------------------------------------------------------------

def test_task_token_actions_name_no_resource_in_iam():
    """SendTaskSuccess/Failure/Heartbeat authorize by task token, which is no IAM resource:
    the service authorization reference lists no resource type for them, so "*" is the only
    Resource that grants them."""
    states = _iam_catalogue()["states"]["Actions"]
    for action in TASK_TOKEN_ACTIONS:
        assert not states[action.partition(":")[2].lower()].get("Resources"), action
    for stage in STAGES:
        statements = _allowing(_policy(stage), TASK_TOKEN_ACTIONS[0], "*")
        assert statements and all(_as_list(s["Resource"]) == ["*"] for s in statements)
        assert {a for s in statements for a in _as_list(s["Action"])} == set(TASK_TOKEN_ACTIONS)


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


def _bucket(stage: str, account: str = ACCOUNT) -> str:
    buckets = _physical_names("AWS::S3::Bucket", "BucketName", stage, account)
    assert len(buckets) == 1, buckets
    return buckets.pop()


def _states_arn(kind: str, machine: str) -> str:
    """A state machine's ARN, or one of its executions' (kind "execution")."""
    if kind == "execution":
        return f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{machine}:enr-0123456789abcdef"
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{machine}"


def _index_names(stage: str) -> dict[str, set[str]]:
    """Physical table name → the names of its global secondary indexes."""
    resources = _load_template(DATA_TEMPLATE)["Resources"]
    return {_resolve_sub(r["Properties"]["TableName"], stage, ACCOUNT_PATTERN):
            {index["IndexName"] for index in r["Properties"].get("GlobalSecondaryIndexes", [])}
            for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"}


def _parameter_arn(name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"


def _granted(policy: dict, service: str, resource: str) -> set[str]:
    """Every action of `service` (lower case) some statement scoped to resources allows on
    `resource`; statements on "*" are checked by test_policy_grants_nothing_more instead."""
    scoped = {**policy, "Statement": [s for s in policy["Statement"] if _as_list(s["Resource"]) != ["*"]]}
    return {f"{service}:{action}" for action in _iam_catalogue()[service]["Actions"]
            if _allowing(scoped, f"{service}:{action}", resource)}


# API call → the IAM actions it is authorized by. TransactWriteItems has no action of its own:
# each Put/Update/Delete/ConditionCheck inside it is authorized as PutItem/UpdateItem/
# DeleteItem/ConditionCheckItem on the table it names.
CALL_ACTIONS = {
    "BatchWriteItem": ["dynamodb:BatchWriteItem"],
    "PutItem": ["dynamodb:PutItem"],
    "UpdateItem": ["dynamodb:UpdateItem"],
    "DeleteItem": ["dynamodb:DeleteItem"],
    "GetItem": ["dynamodb:GetItem"],
    "BatchGetItem": ["dynamodb:BatchGetItem"],
    "Query": ["dynamodb:Query"],
    "Scan": ["dynamodb:Scan"],
    "ConditionCheckItem": ["dynamodb:ConditionCheckItem"],
    "DescribeTable": ["dynamodb:DescribeTable"],
    "TransactWriteItems(Put)": ["dynamodb:PutItem"],
    "TransactWriteItems(Update)": ["dynamodb:UpdateItem"],
    "TransactWriteItems(Delete)": ["dynamodb:DeleteItem"],
    "TransactWriteItems(ConditionCheck)": ["dynamodb:ConditionCheckItem"],
}
# The ingest and stream path (events, contacts, identities) reads and writes its three tables
# through one statement: batched event writes and timeline queries, PynamoDB's conditional
# puts, updates, batch gets and merge transactions of contacts and identities.
_INGEST_CALLS = ("BatchWriteItem", "PutItem", "UpdateItem", "GetItem", "BatchGetItem", "Query",
                 "TransactWriteItems(Put)", "TransactWriteItems(Update)",
                 "TransactWriteItems(ConditionCheck)", "ConditionCheckItem", "DescribeTable")
# The calls the code makes on each table, by the variable that names it; the policy must
# grant exactly their actions there (test_policy_grants_nothing_more).
TABLE_CALLS = {
    # resent_events.py: the stream handler deletes a resent messageId's extra rows
    "MERCURIO_EVENTS_TABLE": _INGEST_CALLS + ("DeleteItem",),
    # back-fills, size previews and the RFM thresholds walk every contact (ContactScan)
    "MERCURIO_CONTACTS_TABLE": _INGEST_CALLS + ("Scan", "DeleteItem"),
    "MERCURIO_IDENTITIES_TABLE": _INGEST_CALLS + ("DeleteItem",),
    # dynamodb_definitions.py: versions and the current pointer written in one transaction
    "MERCURIO_DEFINITIONS_TABLE": ("GetItem", "Query", "PutItem", "UpdateItem",
                                   "TransactWriteItems(Put)", "TransactWriteItems(Update)"),
    # dynamodb_memberships.py: entering puts, leaving deletes (conditional), then the shard's
    # size counter moves (ADD); a size sums the shard counters (BatchGetItem); recount queries
    "MERCURIO_MEMBERSHIPS_TABLE": ("Query", "PutItem", "DeleteItem", "UpdateItem", "BatchGetItem"),
    # dynamodb_schedule.py: file a contact under a minute, walk the due minutes, drop what is done
    "MERCURIO_SCHEDULE_TABLE": ("PutItem", "GetItem", "Query", "DeleteItem"),
    # dynamodb_deliveries.py: conditional updates (claim, attempt, reopen), reads, and the
    # listing through its indexes (INDEXED_TABLES)
    "MERCURIO_DELIVERIES_TABLE": ("UpdateItem", "GetItem", "Query"),
    # dynamodb_messages.py: conditional create (put), claim/release/advance (conditional
    # update; an out-of-order advance reads, then puts conditionally), per-contact and
    # provider-id queries through its indexes, the listed messages read by key (batch get),
    # erasure by batch deletes
    "MERCURIO_MESSAGES_TABLE": ("PutItem", "GetItem", "UpdateItem", "Query", "BatchGetItem", "BatchWriteItem"),
    # dynamodb_suppressions.py: first-come conditional puts, found by hash
    "MERCURIO_SUPPRESSIONS_TABLE": ("PutItem", "Query"),
    # dynamodb_channel_stats.py (ADD counters, window queries), dynamodb_campaign_stats.py
    # (ADD funnel counters, one query per campaign) and dynamodb_send_rate.py (read, then one
    # conditional update of the bucket)
    "MERCURIO_CHANNELS_TABLE": ("UpdateItem", "Query", "GetItem"),
    # dynamodb_enrollments.py: enrollments, a contact's entries, node counters (ADD), journey
    # controls and coupon pools; conditional puts and updates, deletes, queries (the `running`
    # index: NAMED_INDEXES), batch reads, transactions (an enrollment with the contact's
    # entries; a coupon claimed from its pool) and an erasure's batch deletes
    "MERCURIO_ENROLLMENTS_TABLE": ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem",
                                   "BatchWriteItem", "TransactWriteItems(ConditionCheck)", "TransactWriteItems(Put)",
                                   "TransactWriteItems(Update)", "TransactWriteItems(Delete)"),
}
# Tables queried through secondary indexes: Query must be allowed on `<table>/index/*` too.
INDEXED_TABLES = ("MERCURIO_DELIVERIES_TABLE", "MERCURIO_MESSAGES_TABLE")
# Secondary indexes granted by name: Query on `<table>/index/<name>`, nothing else there.
NAMED_INDEXES = {"MERCURIO_ENROLLMENTS_TABLE": "running"}
# SQS actions on each queue of the data template (by name pattern): the stream mapping
# reports failed batches to the events dead-letter queue through the function's role; the
# effects are enqueued in batches (sqs:SendMessage authorizes SendMessageBatch), consumed by
# the event source mapping (receive, delete, attributes) and delayed by the consumer; the
# effects dead-letter queue is fed by SQS's own redrive, so no role sends to it.
QUEUE_CALLS = {
    "mercurio-{stage}-events-dlq": {"sqs:sendmessage"},
    "mercurio-{stage}-effects": {"sqs:sendmessage", "sqs:getqueueurl", "sqs:receivemessage", "sqs:deletemessage",
                                 "sqs:changemessagevisibility", "sqs:getqueueattributes"},
    "mercurio-{stage}-effects-dlq": set(),
    # services/messaging.py enqueues on either lane's queue; each queue's consumer receives,
    # deletes and delays (deferrals, provider retries) like the effects consumer
    "mercurio-{stage}-messages": {"sqs:sendmessage", "sqs:getqueueurl", "sqs:receivemessage", "sqs:deletemessage",
                                  "sqs:changemessagevisibility", "sqs:getqueueattributes"},
    "mercurio-{stage}-messages-transactional": {"sqs:sendmessage", "sqs:getqueueurl", "sqs:receivemessage",
                                                "sqs:deletemessage", "sqs:changemessagevisibility",
                                                "sqs:getqueueattributes"},
    "mercurio-{stage}-messages-dlq": set(),
    "mercurio-{stage}-ses-feedback": {"sqs:receivemessage", "sqs:deletemessage", "sqs:changemessagevisibility",
                                      "sqs:getqueueattributes"},
    "mercurio-{stage}-ses-feedback-dlq": set(),
    # services/broadcasts.py: a launch slice enqueues fan-out batches (SendMessageBatch is
    # authorized by sqs:SendMessage); broadcast_fanout consumes them through its mapping
    "mercurio-{stage}-broadcast-fanout": {"sqs:sendmessage", "sqs:getqueueurl", "sqs:receivemessage",
                                          "sqs:deletemessage", "sqs:changemessagevisibility",
                                          "sqs:getqueueattributes"},
    "mercurio-{stage}-broadcast-fanout-dlq": set(),
    # Journeys: signals are enqueued (sqs_journeys.py, SendMessageBatch included) and consumed
    # by journey_events; the enrollment runner's two task queues are fed by the state
    # machine's own role and only consumed by the app (journey_advance, journey_event_waits),
    # whose back-off finds the queue by name (GetQueueUrl) to delay a failed message
    "mercurio-{stage}-journey-events.fifo": {"sqs:sendmessage", "sqs:getqueueurl", "sqs:receivemessage",
                                             "sqs:deletemessage", "sqs:changemessagevisibility",
                                             "sqs:getqueueattributes"},
    "mercurio-{stage}-journey-events-dlq.fifo": set(),
    "mercurio-{stage}-journey-advance": {"sqs:getqueueurl", "sqs:receivemessage", "sqs:deletemessage",
                                         "sqs:changemessagevisibility", "sqs:getqueueattributes"},
    "mercurio-{stage}-journey-event-waits": {"sqs:getqueueurl", "sqs:receivemessage", "sqs:deletemessage",
                                             "sqs:changemessagevisibility", "sqs:getqueueattributes"},
    "mercurio-{stage}-journeys-dlq": set(),
}
# Step Functions, by state machine name: what the app may do on the machine itself and on
# its executions (adapters/sfn_runner.py starts one execution per enrollment, stops it when
# a journey is stopped, reads its status). Answering task tokens (SendTaskSuccess/Failure/
# Heartbeat) names no resource in IAM: see NEEDS_ANY_RESOURCE.
STATE_MACHINE_CALLS = {
    "mercurio-{stage}-enrollment-runner": {"stateMachine": {"states:startexecution"},
                                           "execution": {"states:stopexecution", "states:describeexecution"}},
}
TASK_TOKEN_ACTIONS = ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"]
# Actions that support resource-level permissions but must be granted on "*" for a call the
# code makes, with the reason.
NEEDS_ANY_RESOURCE = {
    # sms_senders.py publishes an SMS to a phone number, which no IAM resource names
    "sns:Publish": "SMS to a phone number",
}
# (states:SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat need "*" too, but for another
# reason: IAM defines no resource type for them, so test_policy_grants_nothing_more accepts
# them on "*" without being listed here; test_task_token_actions_name_no_resource_in_iam
# proves it from the service authorization reference.)
# Messaging secrets (bootstrap.py): the link-signing secret and the suppression salt.
MESSAGING_SECRETS = ("MERCURIO_LINK_SECRET_PARAMETER", "MERCURIO_SUPPRESSION_SALT_PARAMETER")
# Object actions on the data bucket, by key prefix. Listing is s3:ListBucket on the bucket,
# conditioned on the prefix (LIST_PREFIXES).
BUCKET_PREFIX_CALLS = {
    # s3_templates.py: the upload inbox is read (make upload-templates and `aws s3 cp` write it
    # with the operator's credentials); the accepted versions are read and written
    # (services/templates.py accepts a version that passed validation)
    "templates/": {"GetObject": ["s3:GetObject"]},
    "accepted-templates/": {"GetObject": ["s3:GetObject"], "PutObject": ["s3:PutObject"]},
    # s3_definitions.py: documents marketers upload are read, never written
    "definitions/": {"GetObject": ["s3:GetObject"]},
    # s3_exports.py: upload_fileobj is PutObject, or for a large file CreateMultipartUpload,
    # UploadPart and CompleteMultipartUpload (all authorized as s3:PutObject) and
    # AbortMultipartUpload when it fails; the download link is a presigned GetObject, which
    # works only while the signer may read the object. An export job writes its parts under
    # exports/<segment>/.parts/ the same way and reads them back (GetObject) to compose the
    # file; the bucket's lifecycle expires them. An erasure (services/privacy.py) deletes the
    # export files of the segments the person was in (DeleteObjects is s3:DeleteObject).
    "exports/": {"PutObject": ["s3:PutObject"], "CreateMultipartUpload": ["s3:PutObject"],
                 "UploadPart": ["s3:PutObject"], "CompleteMultipartUpload": ["s3:PutObject"],
                 "AbortMultipartUpload": ["s3:AbortMultipartUpload"], "GetObject (presigned)": ["s3:GetObject"],
                 "GetObject (export parts)": ["s3:GetObject"], "DeleteObjects (erasure)": ["s3:DeleteObject"]},
}
# Listed prefixes: uploaded definitions, the templates' upload inbox and their accepted versions
# (services/templates.py; s3_templates.py lists a prefix to judge its changes).
LIST_PREFIXES = ("definitions/", "templates/", "accepted-templates/", "exports/")
# Webhook signing secrets named by destination definitions (chalicelib/domain/destinations.py).
DESTINATION_SECRETS = "/mercurio/{stage}/destinations/"
STREAM_ACTIONS = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                  "dynamodb:ListStreams"]
LOG_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
TRACE_ACTIONS = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
# Nothing in the code drops or reconfigures tables, deletes uploads (exports only, for an
# erasure: BUCKET_PREFIX_CALLS), deletes secrets, or changes the state machine (or hands a
# role to one); granting it would only widen what a bug could do. (It writes the
# destinations' signing secrets only: ssm:PutParameter and kms:Encrypt are checked on those
# below.)
NEVER_GRANTED = ["dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:PartiQLDelete",
                 "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteBucket", "s3:PutBucketPolicy",
                 "ssm:DeleteParameter", "sqs:DeleteQueue", "sqs:PurgeQueue", "sqs:SetQueueAttributes",
                 "states:CreateStateMachine", "states:UpdateStateMachine", "states:DeleteStateMachine",
                 "iam:PassRole"]


def _list_prefix_conditions(statement: dict) -> list[str]:
    condition = statement.get("Condition", {})
    return [*_as_list(condition.get("StringLike", {}).get("s3:prefix", [])),
            *_as_list(condition.get("StringEquals", {}).get("s3:prefix", []))]


@pytest.mark.parametrize("stage", STAGES)
def test_policy_allows_every_call_the_code_makes(stage):
    policy = _policy(stage)
    env = _stage_env(stage)
    tables = _physical_names("AWS::DynamoDB::Table", "TableName", stage)
    assert set(TABLE_CALLS) == set(_table_variables().values()), "every table needs its calls listed"
    assert {env[variable] for variable in TABLE_CALLS} == tables
    missing = []

    def need(action: str, resource: str) -> list[dict]:
        statements = _allowing(policy, action, resource)
        if not statements:
            missing.append(f"{action} on {resource}")
        return statements

    for variable, calls in TABLE_CALLS.items():
        for call in calls:
            for action in CALL_ACTIONS[call]:
                need(action, _table_arn(env[variable]))
    for variable in INDEXED_TABLES:
        need("dynamodb:Query", _table_arn(env[variable]) + "/index/by_status")
    for variable, index in NAMED_INDEXES.items():
        need("dynamodb:Query", _table_arn(env[variable]) + f"/index/{index}")
    stream = _table_arn(env["MERCURIO_EVENTS_TABLE"]) + "/stream/2026-01-01T00:00:00.000"
    for action in STREAM_ACTIONS:
        need(action, stream)

    # The committed bucket name is a placeholder for the account id that deploy.sh fills in.
    bucket = _bucket(stage)
    assert env["MERCURIO_DATA_BUCKET"].replace(PLACEHOLDER, ACCOUNT) == bucket
    for prefix, calls in BUCKET_PREFIX_CALLS.items():
        for actions in calls.values():
            for action in actions:
                need(action, f"arn:aws:s3:::{bucket}/{prefix}segments/2026-11/Coffee-lovers.csv")
    statements = need("s3:ListBucket", f"arn:aws:s3:::{bucket}")
    for prefix in LIST_PREFIXES:
        assert any(fnmatch.fnmatchcase(prefix, p) for statement in statements
                   for p in _list_prefix_conditions(statement)), \
            f"the listing of {prefix} is not allowed by an s3:prefix condition"

    secrets = [_parameter_arn(env["MERCURIO_ADMIN_TOKEN_PARAMETER"]),
               _parameter_arn(DESTINATION_SECRETS.format(stage=stage) + "crm-signing-secret"),
               *(_parameter_arn(env[variable]) for variable in MESSAGING_SECRETS)]
    for parameter_arn in secrets:
        need("ssm:GetParameter", parameter_arn)
        key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b3e9a5c-1111-2222-3333-444455556666"
        for statement in need("kms:Decrypt", key):
            conditions = statement.get("Condition", {}).get("StringLike", {})
            assert fnmatch.fnmatchcase(f"ssm.{REGION}.amazonaws.com", conditions.get("kms:ViaService", "")), \
                "kms:Decrypt must be limited to calls made through SSM"
            assert any(fnmatch.fnmatchcase(parameter_arn, p)
                       for p in _as_list(conditions.get("kms:EncryptionContext:PARAMETER_ARN", []))), \
                f"kms:Decrypt must be limited to the stage's secrets, including {parameter_arn}"

    for function in FUNCTIONS:
        group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/mercurio-{stage}-{function}"
        need("logs:CreateLogGroup", group)
        for action in LOG_ACTIONS[1:]:
            need(action, f"{group}:log-stream:2026/01/01/[$LATEST]0123456789abcdef")
    for action in TRACE_ACTIONS:
        need(action, "*")
    assert {q.format(stage=stage) for q in QUEUE_CALLS} == _physical_names("AWS::SQS::Queue", "QueueName", stage)
    for queue, actions in QUEUE_CALLS.items():
        for action in actions:
            need(action, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.format(stage=stage)}")
    assert env["MERCURIO_EFFECTS_QUEUE"] == f"mercurio-{stage}-effects"
    assert {m.format(stage=stage) for m in STATE_MACHINE_CALLS} == _physical_names(
        "AWS::StepFunctions::StateMachine", "StateMachineName", stage)
    for machine, calls in STATE_MACHINE_CALLS.items():
        for kind, actions in calls.items():
            for action in actions:
                need(action, _states_arn(kind, machine.format(stage=stage)))
    for action in TASK_TOKEN_ACTIONS:
        need(action, "*")
    # Messaging: raw email through SES v2 (from a verified identity, with a configuration set),
    # its quota, and SMS and push through SNS.
    for action in ("ses:SendEmail", "ses:SendRawEmail"):
        need(action, f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/shop.example")
        need(action, f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/mercurio")
    need("ses:GetAccount", "*")
    need("sns:Publish", "*")
    # The admin API stores destinations' signing secrets (PUT /v1/admin/destinations/{id}/secret).
    destination_secret = _parameter_arn(DESTINATION_SECRETS.format(stage=stage) + "crm")
    need("ssm:PutParameter", destination_secret)
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b3e9a5c-1111-2222-3333-444455556666"
    for statement in need("kms:Encrypt", key):
        conditions = statement.get("Condition", {}).get("StringLike", {})
        assert fnmatch.fnmatchcase(f"ssm.{REGION}.amazonaws.com", conditions.get("kms:ViaService", ""))
        assert all(fnmatch.fnmatchcase(p, f"arn:aws:ssm:*:*:parameter/mercurio/{stage}/destinations/*")
                   for p in _as_list(conditions.get("kms:EncryptionContext:PARAMETER_ARN", [])))
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
            elif "*" in resources and catalogue[service]["Actions"][name.lower()].get("Resources") \
                    and action not in NEEDS_ANY_RESOURCE:
                problems.append(f"{sid}: {action} supports resource-level permissions but is granted on *")
        for resource in resources:
            for other_stage in other:
                if f"mercurio-{other_stage}-" in resource or f"/mercurio/{other_stage}/" in resource:
                    problems.append(f"{sid}: {resource} belongs to stage {other_stage}")
        if "s3:listbucket" in {a.lower() for a in actions}:
            prefixes = _list_prefix_conditions(statement)
            if not prefixes or not all(p.startswith(LIST_PREFIXES) for p in prefixes):
                problems.append(f"{sid}: s3:ListBucket must be conditioned on s3:prefix {' or '.join(LIST_PREFIXES)}…")

    # Per table: exactly the actions of the calls made there.
    for variable, calls in TABLE_CALLS.items():
        expected = {action.lower() for call in calls for action in CALL_ACTIONS[call]}
        granted = _granted(policy, "dynamodb", _table_arn(env[variable]))
        if granted != expected:
            problems.append(f"{env[variable]}: grants {sorted(granted - expected)} more, "
                            f"{sorted(expected - granted)} less than the code calls")
    # Per key prefix of the data bucket, and on the bucket itself: exactly what the code does.
    bucket = f"arn:aws:s3:::{_bucket(stage)}"
    for prefix in (*BUCKET_PREFIX_CALLS, "", "other/", "definitions-old/", "exports-old/"):
        expected = {a.lower() for actions in BUCKET_PREFIX_CALLS.get(prefix, {}).values() for a in actions}
        granted = _granted(policy, "s3", f"{bucket}/{prefix}segments/x.yaml")
        if granted != expected:
            problems.append(f"s3 objects under {prefix!r}: grants {sorted(granted)}, expected {sorted(expected)}")
    if _granted(policy, "s3", bucket) != {"s3:listbucket"}:
        problems.append(f"the data bucket itself: grants {sorted(_granted(policy, 's3', bucket))}")
    # Secrets: the admin token and the destinations' signing secrets, no other parameter;
    # only the destinations' secrets are ever written.
    for name in (f"/mercurio/{stage}/other", f"/mercurio/{stage}/destinations-old/x", "/other/secret"):
        if _allowing(policy, "ssm:GetParameter", _parameter_arn(name)):
            problems.append(f"ssm:GetParameter on {name}")
    for name in (env["MERCURIO_ADMIN_TOKEN_PARAMETER"], f"/mercurio/{stage}/other", "/other/secret"):
        if _allowing(policy, "ssm:PutParameter", _parameter_arn(name)):
            problems.append(f"ssm:PutParameter on {name}")
    # On a named index: Query only.
    for variable, index in NAMED_INDEXES.items():
        granted = _granted(policy, "dynamodb", _table_arn(env[variable]) + f"/index/{index}")
        if granted != {"dynamodb:query"}:
            problems.append(f"index {index} of {env[variable]}: grants {sorted(granted)}")
    # Per state machine and its executions: exactly the calls made there.
    for machine, calls in STATE_MACHINE_CALLS.items():
        for kind in ("stateMachine", "execution"):
            granted = _granted(policy, "states", _states_arn(kind, machine.format(stage=stage)))
            if granted != calls.get(kind, set()):
                problems.append(f"{kind} {machine}: grants {sorted(granted)}, expected {sorted(calls.get(kind, set()))}")
        for other_stage in other:
            if _granted(policy, "states", _states_arn("stateMachine", machine.format(stage=other_stage))):
                problems.append(f"starts the {other_stage} state machine")
    # Per queue: exactly the actions of the calls made there.
    for queue, expected in QUEUE_CALLS.items():
        granted = _granted(policy, "sqs", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.format(stage=stage)}")
        if granted != expected:
            problems.append(f"queue {queue}: grants {sorted(granted - expected)} more, "
                            f"{sorted(expected - granted)} less than the code calls")

    probes = ["*", bucket, f"{bucket}/definitions/x.yaml", f"{bucket}/templates/x.html.j2",
              *(_table_arn(env[variable]) for variable in TABLE_CALLS)]
    for action in NEVER_GRANTED:
        if any(_allowing(policy, action, probe) for probe in probes):
            problems.append(f"{action} is granted")
    for other_stage in other:
        if _allowing(policy, "dynamodb:GetItem", _table_arn(f"mercurio-{other_stage}-events")):
            problems.append(f"reads the {other_stage} tables")
        if _allowing(policy, "s3:GetObject", f"arn:aws:s3:::{_bucket(other_stage)}/exports/x.csv"):
            problems.append(f"reads the {other_stage} bucket")
    assert problems == []


@pytest.mark.parametrize("stage", STAGES)
def test_policy_resources_name_resources_the_templates_define(stage):
    tables = _physical_names("AWS::DynamoDB::Table", "TableName", stage)
    queues = _physical_names("AWS::SQS::Queue", "QueueName", stage)
    buckets = _physical_names("AWS::S3::Bucket", "BucketName", stage, ACCOUNT_PATTERN)
    machines = _physical_names("AWS::StepFunctions::StateMachine", "StateMachineName", stage)
    indexes = _index_names(stage)
    env = _stage_env(stage)
    parameters = {f"arn:aws:ssm:*:*:parameter{env['MERCURIO_ADMIN_TOKEN_PARAMETER']}",
                  f"arn:aws:ssm:*:*:parameter{DESTINATION_SECRETS.format(stage=stage)}*",
                  *(f"arn:aws:ssm:*:*:parameter{env[variable]}" for variable in MESSAGING_SECRETS)}
    unknown = []
    for statement in _policy(stage)["Statement"]:
        for resource in _as_list(statement["Resource"]):
            if resource.startswith("arn:aws:dynamodb:"):
                match = re.fullmatch(r"arn:aws:dynamodb:\*:\*:table/([^/]+)(/stream/\*|/index/\*|/index/([\w.-]+))?",
                                     resource)
                if not match or match.group(1) not in tables or \
                        (match.group(3) and match.group(3) not in indexes.get(match.group(1), ())):
                    unknown.append(resource)
            elif resource.startswith("arn:aws:states:"):
                match = re.fullmatch(r"arn:aws:states:\*:\*:(?:stateMachine:([^:]+)|execution:([^:]+):\*)", resource)
                if not match or (match.group(1) or match.group(2)) not in machines:
                    unknown.append(resource)
            elif resource.startswith("arn:aws:sqs:"):
                match = re.fullmatch(r"arn:aws:sqs:\*:\*:([^:]+)", resource)
                if not match or match.group(1) not in queues:
                    unknown.append(resource)
            elif resource.startswith("arn:aws:s3:"):
                match = re.fullmatch(r"arn:aws:s3:::([^/]+)(?:/(.+)\*)?", resource)
                if not match or match.group(1) not in buckets or \
                        match.group(2) not in (None, *BUCKET_PREFIX_CALLS):
                    unknown.append(resource)
            elif resource.startswith("arn:aws:ssm:"):
                if resource not in parameters:
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

def test_deploy_script_checks_and_fills_in_every_data_stack_name():
    """deploy.sh compares each table name of the stage with the data stack's outputs and
    writes the account-specific values (stream ARN, bucket name) over the placeholders."""
    script = DEPLOY_SCRIPT.read_text()
    data = _load_template(DATA_TEMPLATE)
    outputs, resources = data["Outputs"], data["Resources"]
    variables = _table_variables()
    checked = dict(re.findall(r"(MERCURIO_\w+_TABLE):(\w+TableName)", script))
    expected = {variables[output["Value"]["Ref"]]: name for name, output in outputs.items()
                if isinstance(output["Value"], dict) and output["Value"].get("Ref") in variables}
    assert checked == expected
    assert set(expected) == set(variables.values()), "every table needs an output deploy.sh can check"
    assert re.search(r'"MERCURIO_EVENTS_STREAM_ARN=\$\{stream_arn\}"', script)
    assert re.search(r'"MERCURIO_DATA_BUCKET=\$\{bucket\}"', script)
    assert re.search(r'bucket="\$\(stack_output "\$\{data_stack\}" DataBucketName\)"', script)
    assert outputs["DataBucketName"]["Value"] == {"Ref": "DataBucket"}
    assert resources["DataBucket"]["Type"] == "AWS::S3::Bucket"
    assert re.search(r'"MERCURIO_ENROLLMENT_RUNNER_ARN=\$\{runner_arn\}"', script)
    assert re.search(r'runner_arn="\$\(stack_output "\$\{data_stack\}" EnrollmentRunnerArn\)"', script)
    for stage in STAGES:
        env = _stage_env(stage)
        assert env["MERCURIO_EVENTS_STREAM_ARN"].endswith("/stream/" + PLACEHOLDER)
        assert env["MERCURIO_DATA_BUCKET"].endswith("-" + PLACEHOLDER)
        assert env["MERCURIO_ENROLLMENT_RUNNER_ARN"].startswith("arn:aws:states:")
        assert env["MERCURIO_ENROLLMENT_RUNNER_ARN"].endswith(f":stateMachine:mercurio-{stage}-enrollment-runner-"
                                                              + PLACEHOLDER)


def test_deploy_script_checks_every_queue_name_the_app_reads():
    """Every queue the stage's environment names (MERCURIO_*_QUEUE) is compared with the data
    stack's output naming that queue, so code never talks to a queue the stack did not create."""
    script = DEPLOY_SCRIPT.read_text()
    data = _load_template(DATA_TEMPLATE)
    checked = dict(re.findall(r"(MERCURIO_\w+_QUEUE):(\w+QueueName)", script))
    for stage in STAGES:
        env = _stage_env(stage)
        by_name = {_resolve_sub(data["Resources"][output["Value"]["Fn::GetAtt"][0]]["Properties"]["QueueName"],
                                stage, ACCOUNT): name
                   for name, output in data["Outputs"].items()
                   if isinstance(output["Value"], dict) and output["Value"].get("Fn::GetAtt", [None, None])[1] == "QueueName"}
        expected = {variable: by_name[value] for variable, value in env.items()
                    if re.fullmatch(r"MERCURIO_\w+_QUEUE", variable)}
        assert checked == expected


def test_deploy_script_reports_batch_item_failures_on_every_queue_consumer():
    """Chalice creates the queue mappings without ReportBatchItemFailures; deploy.sh turns it
    on for each consumer, on the queue the data stack created, and sets nothing else there (a
    batching window would be refused on the FIFO queue)."""
    script = DEPLOY_SCRIPT.read_text()
    outputs = _load_template(DATA_TEMPLATE)["Outputs"]
    configured = {(function or "deliver_effects"): variable for variable, function in
                  re.findall(r'^\s*configure_queue_mapping "\$\{(\w+)\}"(?: (\w+))?$', script, re.M)}
    assert set(configured) == set(QUEUE_CONSUMERS)
    for function, variable in configured.items():
        queue = QUEUE_CONSUMERS[function][0]
        (output,) = [name for name, o in outputs.items() if o["Value"] == {"Fn::GetAtt": [queue, "Arn"]}]
        assert f'{variable}="$(stack_output "${{data_stack}}" {output})"' in script, function
    body = script[script.index("configure_queue_mapping() {"):]
    body = body[:body.index("\n}\n")]
    assert "--function-response-types ReportBatchItemFailures" in body
    assert "batching-window" not in body


def test_deploy_script_deploys_the_data_stack_with_its_role():
    """The data template creates an IAM role (the enrollment runner's), which CloudFormation
    creates only when the deploy acknowledges CAPABILITY_IAM."""
    script = DEPLOY_SCRIPT.read_text()
    two_stacks = script[script.index("deploy_two_stacks() {"):script.index("deploy_single_stack() {")]
    deploy = two_stacks[two_stacks.index("aws cloudformation deploy"):two_stacks.index("--no-fail-on-empty-changeset")]
    roles = [r for r in _load_template(DATA_TEMPLATE)["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert roles and all("RoleName" not in r["Properties"] for r in roles)
    assert '--template-file "${DATA_TEMPLATE}"' in deploy
    assert "--capabilities CAPABILITY_IAM" in deploy


def test_deploy_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(DEPLOY_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(DEPLOY_SCRIPT, os.X_OK), "infrastructure/deploy.sh must be executable"
    assert shutil.which("shellcheck"), "shellcheck is missing: `make test` installs it (apt-get install shellcheck)"
    result = subprocess.run(["shellcheck", str(DEPLOY_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
