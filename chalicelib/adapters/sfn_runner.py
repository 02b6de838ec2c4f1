"""The enrollment runner on AWS Step Functions (infrastructure/enrollment-runner.asl.json).

One execution per enrollment, named by the enrollment id: a retried start with the same name
and input finds the running execution (Step Functions answers it again); one that ended, or
another input, is `ExecutionAlreadyExists`, which this adapter turns into the existing ARN
(the enrollment's start was already done — what happened since is on the enrollment).
"""
from __future__ import annotations

import json

import boto3
from botocore.exceptions import ClientError

from chalicelib.services.journey_ports import EnrollmentRunner, TokenGone

TOKEN_GONE = ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken")
EXECUTION_ENDED = ("ExecutionDoesNotExist",)


class RunnerNotConfigured(Exception):
    """No state machine ARN (MERCURIO_ENROLLMENT_RUNNER_ARN): journeys cannot start."""


class StepFunctionsRunner(EnrollmentRunner):
    def __init__(self, state_machine_arn: str | None, client=None):
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = boto3.client("stepfunctions")
        return self._client

    def execution_arn(self, name: str) -> str:
        if not self.state_machine_arn:
            raise RunnerNotConfigured("MERCURIO_ENROLLMENT_RUNNER_ARN is not set: the enrollment runner state machine "
                                      "is not deployed (infrastructure/template.yaml)")
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"

    def start(self, name: str, payload: dict) -> str:
        arn = self.execution_arn(name)
        try:
            return self.client.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                               input=json.dumps(payload, separators=(",", ":")))["executionArn"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return arn
            raise

    def answer(self, token: str, output: dict) -> None:
        try:
            self.client.send_task_success(taskToken=token, output=json.dumps(output, separators=(",", ":"),
                                                                              default=str))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in TOKEN_GONE:
                raise TokenGone(exc.response["Error"].get("Message") or exc.response["Error"]["Code"]) from None
            raise

    def fail(self, token: str, error: str, cause: str) -> None:
        try:
            self.client.send_task_failure(taskToken=token, error=error[:256], cause=cause[:32768])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in TOKEN_GONE:
                raise TokenGone(exc.response["Error"].get("Message") or exc.response["Error"]["Code"]) from None
            raise

    def stop(self, execution_arn: str, cause: str) -> bool:
        try:
            self.client.stop_execution(executionArn=execution_arn, error="Mercurio.EnrollmentEnded",
                                       cause=cause[:32768])
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in EXECUTION_ENDED:
                return False
            raise
