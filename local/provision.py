"""Create the resources of infrastructure/template.yaml in any AWS endpoint (the emulator).

The same CloudFormation file is deployed on AWS, so the local tables, streams and TTLs are
the ones production has, and the enrollment runner is the state machine production runs.
"""
from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import boto3
import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "infrastructure" / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


def _resolve(value, params: dict):
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(params[m.group(1)]), text)
        if "Ref" in value:
            return params[value["Ref"]]
        if "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            return params[f"{logical}.{attribute}"]  # a resource created earlier in the file
        return {k: _resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    return value


def table_names(stage: str, template: dict | None = None) -> dict[str, str]:
    """Logical id → physical table name for a stage."""
    template = template or load_template()
    params = {"Stage": stage, "AWS::Region": "us-east-1", "AWS::AccountId": "000000000000"}
    return {
        logical: _resolve(res["Properties"]["TableName"], params)
        for logical, res in template["Resources"].items()
        if res["Type"] == "AWS::DynamoDB::Table"
    }


def substitute_definition(definition: str, substitutions: dict) -> str:
    """What CloudFormation does with a state machine's DefinitionSubstitutions: each
    `${Name}` of the definition becomes the value given for Name."""
    def value(match):
        if match.group(1) not in substitutions:
            raise ValueError(f"the definition uses ${{{match.group(1)}}}, which DefinitionSubstitutions does not give")
        return str(substitutions[match.group(1)])

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", value, definition)


def execute_state_machines(endpoint_url: str) -> None:
    """Turn on moto's executing Step Functions in a moto server (by default it only records
    executions). moto keeps executing and non-executing state machines in two separate
    backends, so this must happen before the machines are created; the configuration is
    global to the server process. In-process moto takes it as
    `mock_aws(config={"stepfunctions": {"execute_state_machine": True}})` instead."""
    request = urllib.request.Request(
        f"{endpoint_url.rstrip('/')}/moto-api/config", method="POST",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass  # moto answers with its batch and lambda settings only, never the stepfunctions one


def _queue_attribute(value) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def provision(stage: str, endpoint_url: str | None = None, region: str = "us-east-1",
              execute: bool = False) -> dict:
    """Create every resource the template declares; return {logical id: physical name or ARN}.

    `execute`: the state machines really run (moto server only, see execute_state_machines;
    the local stack asks for it, tests that only need the resources do not)."""
    template = load_template()
    params = {"Stage": stage, "AWS::Region": region, "AWS::AccountId": "000000000000"}
    if execute:
        if endpoint_url is None:
            raise ValueError("execute=True needs a moto server's endpoint_url; in-process moto takes "
                             "mock_aws(config={'stepfunctions': {'execute_state_machine': True}})")
        execute_state_machines(endpoint_url)
    ddb = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region)
    created: dict[str, str] = {}
    for logical, resource in template["Resources"].items():
        props = _resolve(resource.get("Properties", {}), params)
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            args = {k: props[k] for k in ("TableName", "AttributeDefinitions", "KeySchema", "BillingMode",
                                          "GlobalSecondaryIndexes", "LocalSecondaryIndexes") if k in props}
            if "StreamSpecification" in props:
                args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
            try:
                description = ddb.create_table(**args)["TableDescription"]
            except ddb.exceptions.ResourceInUseException:
                description = ddb.describe_table(TableName=props["TableName"])["Table"]
            ddb.get_waiter("table_exists").wait(TableName=props["TableName"])
            ttl = props.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                ddb.update_time_to_live(TableName=props["TableName"], TimeToLiveSpecification=ttl)
            created[logical] = props["TableName"]
            if description.get("LatestStreamArn"):
                created[f"{logical}.StreamArn"] = description["LatestStreamArn"]
        elif kind == "AWS::S3::Bucket":
            s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
            try:
                s3.create_bucket(Bucket=props["BucketName"])
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            created[logical] = props["BucketName"]
        elif kind == "AWS::SQS::Queue":
            sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
            attributes = {k: _queue_attribute(props[k]) for k in (
                "VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy", "FifoQueue",
                "ContentBasedDeduplication") if k in props}
            url = sqs.create_queue(QueueName=props["QueueName"], Attributes=attributes)["QueueUrl"]
            created[logical] = url
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            created[f"{logical}.Arn"] = params[f"{logical}.Arn"] = arn
            created[f"{logical}.QueueName"] = params[f"{logical}.QueueName"] = props["QueueName"]
            created[f"{logical}.QueueUrl"] = params[f"{logical}.QueueUrl"] = url
        elif kind == "AWS::SNS::Topic":
            sns = boto3.client("sns", endpoint_url=endpoint_url, region_name=region)
            created[logical] = params[logical] = sns.create_topic(Name=props["TopicName"])["TopicArn"]
        elif kind == "AWS::SNS::Subscription":
            sns = boto3.client("sns", endpoint_url=endpoint_url, region_name=region)
            attributes = {"RawMessageDelivery": "true"} if str(props.get("RawMessageDelivery")).lower() == "true" else {}
            created[logical] = sns.subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"],
                                             Endpoint=props["Endpoint"], Attributes=attributes)["SubscriptionArn"]
        elif kind == "AWS::SQS::QueuePolicy":
            sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
            for url in props["Queues"]:
                sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
        elif kind == "AWS::SNS::TopicPolicy":
            sns = boto3.client("sns", endpoint_url=endpoint_url, region_name=region)
            for topic in props["Topics"]:
                sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy",
                                         AttributeValue=json.dumps(props["PolicyDocument"]))
        elif kind == "AWS::SES::ConfigurationSet":
            sesv2 = boto3.client("sesv2", endpoint_url=endpoint_url, region_name=region)
            try:
                sesv2.create_configuration_set(ConfigurationSetName=props["Name"])
            except sesv2.exceptions.AlreadyExistsException:
                pass
            created[logical] = params[logical] = props["Name"]
        elif kind == "AWS::SES::ConfigurationSetEventDestination":
            # The emulator keeps configuration sets but publishes no events from them: the local
            # runner's stand-in (local/ses_events.py) publishes the same records to the same topic.
            created[logical] = "emulated by local/ses_events.py"
        elif kind == "AWS::IAM::Role":
            # Created in the emulator's IAM (which enforces nothing) so the state machine has a
            # real role ARN; named after the stage as CloudFormation would name it after the stack.
            iam = boto3.client("iam", endpoint_url=endpoint_url, region_name=region)
            name = props.get("RoleName") or f"mercurio-{stage}-{logical}"
            try:
                arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
                    props["AssumeRolePolicyDocument"]))["Role"]["Arn"]
            except iam.exceptions.EntityAlreadyExistsException:
                arn = iam.get_role(RoleName=name)["Role"]["Arn"]
            for policy in props.get("Policies", []):
                iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"],
                                    PolicyDocument=json.dumps(policy["PolicyDocument"]))
            created[logical] = params[logical] = name
            created[f"{logical}.Arn"] = params[f"{logical}.Arn"] = arn
        elif kind == "AWS::StepFunctions::StateMachine":
            sfn = boto3.client("stepfunctions", endpoint_url=endpoint_url, region_name=region)
            definition = substitute_definition(props["DefinitionString"], props.get("DefinitionSubstitutions", {}))
            arn = sfn.create_state_machine(name=props["StateMachineName"], definition=definition,
                                           roleArn=props["RoleArn"],
                                           type=props.get("StateMachineType", "STANDARD"))["stateMachineArn"]
            created[logical] = params[logical] = arn
            created[f"{logical}.Name"] = params[f"{logical}.Name"] = props["StateMachineName"]
        elif kind == "AWS::CloudWatch::Alarm":
            cloudwatch = boto3.client("cloudwatch", endpoint_url=endpoint_url, region_name=region)
            cloudwatch.put_metric_alarm(**{k: props[k] for k in (
                "AlarmName", "AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic", "Period",
                "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData") if k in props})
            created[logical] = props["AlarmName"]
        else:
            raise ValueError(f"the local stack cannot create {logical} ({kind}); teach local/provision.py")
    return created
