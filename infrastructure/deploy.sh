#!/usr/bin/env bash
# Deploy Mercurio to AWS. See docs/DEPLOY.md.
#
#   STAGE=prod ./infrastructure/deploy.sh                # data stack + `chalice deploy` (default)
#   STAGE=prod ./infrastructure/deploy.sh single-stack   # everything in one CloudFormation stack
#   STAGE=prod ./infrastructure/deploy.sh admin-token    # print the admin bearer token
#   STAGE=prod ./infrastructure/deploy.sh teardown       # remove the API and functions (data is kept)
#
# Environment:
#   STAGE              a stage of .chalice/config.json (default: dev)
#   AWS_PROFILE        the usual AWS CLI credentials selection
#   AWS_REGION         region to deploy to (else AWS_DEFAULT_REGION, else the profile's region)
#   PRINT_ADMIN_TOKEN  set to 1 to print the admin token at the end of a deploy
#   ARTIFACT_BUCKET    single-stack only: an S3 bucket in the same region for the code package
#   ASSUME_YES         set to 1 to skip the teardown confirmation
#
# The default (two-stack) path:
#   1. deploys infrastructure/template.yaml as the stack mercurio-<stage>-data (with
#      CAPABILITY_IAM: it holds the enrollment runner state machine's role);
#   2. checks the table and queue names against it, and reads the events stream ARN, the
#      data bucket name, the enrollment runner's ARN and the queue ARNs from it;
#   3. creates the admin token, link signing secret and suppression salt SecureString
#      parameters if they do not exist yet (never changes an existing one);
#   4. runs `chalice deploy --stage <stage>` with the real stream ARN, bucket name and
#      enrollment runner ARN written into the stage's environment in .chalice/config.json for
#      the duration of the command (the committed file keeps placeholders, because the ARNs
#      embed the account id and region, the stream's also its creation time, and the bucket
#      name the account id; it is restored afterwards);
#   5. turns on ReportBatchItemFailures (plus bounded retries and the dead-letter queue) on the
#      stream's event source mapping Chalice created, and ReportBatchItemFailures on each
#      queue consumer's (effects, messages, feedback, fan-out, journeys), which Chalice itself
#      cannot configure;
#   6. uploads templates/ to the data bucket's inbox (accepted by the app within minutes);
#   7. prints the API URL.
set -euo pipefail

readonly APP_NAME="mercurio"
readonly STREAM_MAX_RETRY_ATTEMPTS=10

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly DATA_TEMPLATE="${REPO_ROOT}/infrastructure/template.yaml"
readonly MERGE_TEMPLATE="${REPO_ROOT}/infrastructure/single-stack.yaml"
readonly CHALICE_CONFIG="${REPO_ROOT}/.chalice/config.json"

STAGE="${STAGE:-dev}"
COMMAND="${1:-deploy}"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set /{/^#/p;}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

# --- tools -----------------------------------------------------------------------------

if [[ -x "${REPO_ROOT}/.venv/bin/python" ]]; then
  PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
else
  PYTHON="${PYTHON:-python3}"
fi
if [[ -x "${REPO_ROOT}/.venv/bin/chalice" ]]; then
  CHALICE="${CHALICE:-${REPO_ROOT}/.venv/bin/chalice}"
else
  CHALICE="${CHALICE:-chalice}"
fi

require_tools() {
  local tool
  for tool in aws "${PYTHON}" "${CHALICE}"; do
    command -v "${tool}" >/dev/null 2>&1 || die "'${tool}' not found (see docs/DEPLOY.md, Prerequisites)"
  done
}

# --- settings --------------------------------------------------------------------------

resolve_region() {
  local region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
  if [[ -z "${region}" ]]; then
    region="$(aws configure get region 2>/dev/null || true)"
  fi
  [[ -n "${region}" ]] || die "no AWS region: set AWS_REGION (or configure one for your profile)"
  export AWS_REGION="${region}" AWS_DEFAULT_REGION="${region}"
}

# Prints the value of environment variable $1 for $STAGE as .chalice/config.json defines it
# (stage value over top-level value, as Chalice merges them).
config_env() {
  "${PYTHON}" - "${CHALICE_CONFIG}" "${STAGE}" "$1" <<'PY'
import json
import sys

path, stage, name = sys.argv[1:]
with open(path) as f:
    config = json.load(f)
env = dict(config.get("environment_variables", {}))
env.update(config["stages"][stage].get("environment_variables", {}))
print(env.get(name, ""))
PY
}

check_stage() {
  [[ "${STAGE}" =~ ^[a-z0-9-]+$ ]] || die "STAGE must match [a-z0-9-]+ (got '${STAGE}')"
  "${PYTHON}" - "${CHALICE_CONFIG}" "${STAGE}" <<'PY' || die "stage '${STAGE}' is not defined in .chalice/config.json"
import json
import sys

path, stage = sys.argv[1:]
with open(path) as f:
    sys.exit(0 if stage in json.load(f).get("stages", {}) else 1)
PY
}

# MERCURIO_SOURCES is JSON inside a JSON string: catch a broken edit before it is deployed.
check_sources() {
  local count
  count="$(config_env MERCURIO_SOURCES | "${PYTHON}" -c '
import json
import sys

sources = json.loads(sys.stdin.read() or "[]")
assert isinstance(sources, list), "MERCURIO_SOURCES must be a JSON list"
for source in sources:
    assert isinstance(source, dict), "each source must be an object"
    for key in ("name", "write_key"):
        assert isinstance(source.get(key), str) and source[key], "source needs a non-empty %r" % key
    origins = source.get("origins", [])
    assert isinstance(origins, list) and all(isinstance(o, str) for o in origins), (
        "origins of %r must be a list of strings" % source["name"])
for key in ("name", "write_key"):
    values = [source[key] for source in sources]
    assert len(values) == len(set(values)), "duplicate source %s" % key
print(len(sources))
')" || die "MERCURIO_SOURCES for stage '${STAGE}' in .chalice/config.json is invalid"
  if [[ "${count}" == "0" ]]; then
    warn "stage '${STAGE}' has no sources: every tracking call will be rejected until you add one (docs/DEPLOY.md, Sources)"
  fi
}

preflight() {
  require_tools
  check_stage
  resolve_region
  local account
  account="$(aws sts get-caller-identity --query Account --output text)" ||
    die "no usable AWS credentials (aws sts get-caller-identity failed)"
  log "stage ${STAGE}, account ${account}, region ${AWS_REGION}"
}

# --- CloudFormation helpers ------------------------------------------------------------

stack_exists() {
  aws cloudformation describe-stacks --stack-name "$1" >/dev/null 2>&1
}

stack_output() {
  local stack="$1" key="$2" value
  value="$(aws cloudformation describe-stacks --stack-name "${stack}" \
    --query "Stacks[0].Outputs[?OutputKey=='${key}'].OutputValue" --output text)"
  [[ -n "${value}" && "${value}" != "None" ]] || die "stack ${stack} has no output ${key}"
  printf '%s\n' "${value}"
}

# --- admin token -----------------------------------------------------------------------

ensure_secret_parameter() {
  # $1: the config variable naming the parameter, $2: what it is (for the log and description).
  # Created once with a random value; an existing one is never changed (a new suppression salt
  # would forget every opt-out, a new link secret would break every link already sent).
  local variable="$1" what="$2" name error
  name="$(config_env "${variable}")"
  [[ -n "${name}" ]] || die "${variable} is not set for stage '${STAGE}'"
  if error="$(aws ssm get-parameter --name "${name}" --query Parameter.Name --output text 2>&1 >/dev/null)"; then
    log "${what} parameter ${name} exists (left unchanged)"
    return
  fi
  [[ "${error}" == *ParameterNotFound* ]] || die "cannot read SSM parameter ${name}: ${error}"

  log "creating ${what} parameter ${name} (SecureString, random value)"
  # The value travels through a private temporary file (mktemp: mode 0600), never through
  # the command line, where other users could see it.
  TOKEN_FILE="$(mktemp)"
  "${PYTHON}" -c 'import secrets, sys; sys.stdout.write(secrets.token_urlsafe(32))' >"${TOKEN_FILE}"
  aws ssm put-parameter --name "${name}" --type SecureString \
    --value "file://${TOKEN_FILE}" \
    --description "Mercurio ${STAGE} ${what}" \
    --tags "Key=project,Value=${APP_NAME}" "Key=stage,Value=${STAGE}" >/dev/null
  rm -f "${TOKEN_FILE}"
  TOKEN_FILE=""
}

ensure_admin_token() {
  ensure_secret_parameter MERCURIO_ADMIN_TOKEN_PARAMETER "admin API bearer token"
  ensure_secret_parameter MERCURIO_LINK_SECRET_PARAMETER "link signing secret"
  ensure_secret_parameter MERCURIO_SUPPRESSION_SALT_PARAMETER "suppression salt"
}

upload_templates() {
  # The default templates into the data bucket's inbox (validated here first); the app accepts
  # each at its next segment-jobs run, as it does a marketer's upload.
  log "uploading templates/ to s3://$1/templates/"
  (cd "${REPO_ROOT}" && "${PYTHON}" -m local.upload_templates --bucket "$1")
}

print_admin_token() {
  local name
  name="$(config_env MERCURIO_ADMIN_TOKEN_PARAMETER)"
  aws ssm get-parameter --name "${name}" --with-decryption \
    --query Parameter.Value --output text
}

# --- Chalice config with the real stream ARN and bucket name ---------------------------

CONFIG_BACKUP=""

restore_chalice_config() {
  if [[ -n "${CONFIG_BACKUP}" && -f "${CONFIG_BACKUP}" ]]; then
    cp "${CONFIG_BACKUP}" "${CHALICE_CONFIG}"
    rm -f "${CONFIG_BACKUP}"
  fi
  CONFIG_BACKUP=""
}

# Writes NAME=VALUE pairs into the stage's environment; restore_chalice_config undoes it.
write_deploy_values_into_config() {
  CONFIG_BACKUP="$(mktemp)"
  cp "${CHALICE_CONFIG}" "${CONFIG_BACKUP}"
  "${PYTHON}" - "${CHALICE_CONFIG}" "${STAGE}" "$@" <<'PY'
import json
import sys

path, stage, *pairs = sys.argv[1:]
with open(path) as f:
    config = json.load(f)
env = config["stages"][stage]["environment_variables"]
for pair in pairs:
    name, _, value = pair.partition("=")
    assert name in env and value, "unexpected deploy value %r" % pair
    env[name] = value
with open(path, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
PY
}

# The tables and the effects queue are named in two places (template.yaml and the stage's
# environment); refuse to deploy code that would talk to resources the data stack did not create.
check_table_names() {
  local stack="$1" pair variable output expected actual
  for pair in MERCURIO_EVENTS_TABLE:EventsTableName \
    MERCURIO_CONTACTS_TABLE:ContactsTableName \
    MERCURIO_IDENTITIES_TABLE:IdentitiesTableName \
    MERCURIO_DEFINITIONS_TABLE:DefinitionsTableName \
    MERCURIO_MEMBERSHIPS_TABLE:MembershipsTableName \
    MERCURIO_SCHEDULE_TABLE:ScheduleTableName \
    MERCURIO_DELIVERIES_TABLE:DeliveriesTableName \
    MERCURIO_MESSAGES_TABLE:MessagesTableName \
    MERCURIO_SUPPRESSIONS_TABLE:SuppressionsTableName \
    MERCURIO_CHANNELS_TABLE:ChannelsTableName \
    MERCURIO_EFFECTS_QUEUE:EffectsQueueName \
    MERCURIO_MESSAGES_QUEUE:MessagesQueueName \
    MERCURIO_TRANSACTIONAL_QUEUE:TransactionalMessagesQueueName \
    MERCURIO_FEEDBACK_QUEUE:FeedbackQueueName \
    MERCURIO_FANOUT_QUEUE:FanOutQueueName \
    MERCURIO_ENROLLMENTS_TABLE:EnrollmentsTableName \
    MERCURIO_JOURNEY_EVENTS_QUEUE:JourneyEventsQueueName \
    MERCURIO_JOURNEY_ADVANCE_QUEUE:JourneyAdvanceQueueName \
    MERCURIO_JOURNEY_WAITS_QUEUE:JourneyEventWaitsQueueName \
    MERCURIO_SES_CONFIGURATION_SET:SesConfigurationSetName; do
    variable="${pair%%:*}"
    output="${pair#*:}"
    expected="$(stack_output "${stack}" "${output}")"
    actual="$(config_env "${variable}")"
    [[ "${expected}" == "${actual}" ]] ||
      die "${variable} is '${actual}' in .chalice/config.json but ${stack} created '${expected}'"
  done
}

# --- event source mapping --------------------------------------------------------------

wait_for_mapping() {
  local uuid="$1" state attempt
  for attempt in $(seq 1 60); do
    state="$(aws lambda get-event-source-mapping --uuid "${uuid}" --query State --output text)"
    case "${state}" in
      Enabled | Disabled) return 0 ;;
      Creating | Enabling | Updating | Disabling) sleep 2 ;;
      *) die "event source mapping ${uuid} is in state '${state}'" ;;
    esac
  done
  die "event source mapping ${uuid} still '${state}' after ${attempt} checks"
}

# The UUIDs of the event source mappings from one source to one of the app's functions.
mapping_uuids() {
  local source_arn="$1" function_name="$2" uuids
  uuids="$(aws lambda list-event-source-mappings --event-source-arn "${source_arn}" \
    --query "EventSourceMappings[?ends_with(FunctionArn, ':function:${function_name}')].UUID" \
    --output text)"
  [[ -n "${uuids}" && "${uuids}" != "None" ]] ||
    die "no event source mapping from ${source_arn} to ${function_name}"
  printf '%s\n' "${uuids}"
}

# After an update: the mapping must report batch item failures, or a failed record takes
# its whole batch with it.
require_batch_item_failures() {
  local uuid="$1" response_types
  wait_for_mapping "${uuid}"
  response_types="$(aws lambda get-event-source-mapping --uuid "${uuid}" \
    --query 'FunctionResponseTypes' --output text)"
  [[ "${response_types}" == *ReportBatchItemFailures* ]] ||
    die "event source mapping ${uuid} did not keep ReportBatchItemFailures"
}

configure_stream_mapping() {
  local stream_arn="$1" dlq_arn="$2" uuids uuid
  uuids="$(mapping_uuids "${stream_arn}" "${APP_NAME}-${STAGE}-process_events")"
  for uuid in ${uuids}; do
    wait_for_mapping "${uuid}"
    log "event source mapping ${uuid}: ReportBatchItemFailures, ${STREAM_MAX_RETRY_ATTEMPTS} retries, failures to ${dlq_arn}"
    aws lambda update-event-source-mapping --uuid "${uuid}" \
      --function-response-types ReportBatchItemFailures \
      --maximum-retry-attempts "${STREAM_MAX_RETRY_ATTEMPTS}" \
      --bisect-batch-on-function-error \
      --destination-config "{\"OnFailure\":{\"Destination\":\"${dlq_arn}\"}}" >/dev/null
    require_batch_item_failures "${uuid}"
  done
}

# Chalice creates the effects queue's event source mapping without ReportBatchItemFailures;
# without it Lambda deletes the failed deliveries with their batch instead of leaving them
# on the queue for their back-off (chalicelib/entrypoints/effects.py).
# The SES feedback queue's mapping needs it too (chalicelib/entrypoints/feedback.py).
configure_queue_mapping() {
  local queue_arn="$1" function="${2:-deliver_effects}" uuids uuid
  uuids="$(mapping_uuids "${queue_arn}" "${APP_NAME}-${STAGE}-${function}")"
  for uuid in ${uuids}; do
    wait_for_mapping "${uuid}"
    log "event source mapping ${uuid}: ReportBatchItemFailures"
    aws lambda update-event-source-mapping --uuid "${uuid}" \
      --function-response-types ReportBatchItemFailures >/dev/null
    require_batch_item_failures "${uuid}"
  done
}

# A request no route matches answers 404 with a fixed body (API Gateway's default is a 403
# whose message repeats the request's Authorization header, an admin token included): the
# same gateway response as in single-stack.yaml. `chalice deploy` rewrites the API's
# definition on every deploy, so it is set again each time, then the stage redeployed.
NOT_FOUND_STATUS=404
NOT_FOUND_BODY='{"error": "no such route"}'
install_not_found_response() {
  local api_id api_stage
  read -r api_id api_stage < <("${PYTHON}" - "${REPO_ROOT}/.chalice/deployed/${STAGE}.json" "${CHALICE_CONFIG}" "${STAGE}" <<'PY'
import json, sys
deployed, config_path, stage = sys.argv[1:]
api = next(r for r in json.load(open(deployed))["resources"] if r.get("resource_type") == "rest_api")
config = json.load(open(config_path))
print(api["rest_api_id"], config["stages"].get(stage, {}).get("api_gateway_stage") or config.get("api_gateway_stage") or "api")
PY
  ) || die "no REST API recorded in .chalice/deployed/${STAGE}.json"
  log "unknown routes answer ${NOT_FOUND_STATUS} (gateway response MISSING_AUTHENTICATION_TOKEN)"
  aws apigateway put-gateway-response --rest-api-id "${api_id}" \
    --response-type MISSING_AUTHENTICATION_TOKEN --status-code "${NOT_FOUND_STATUS}" \
    --response-parameters '{"gatewayresponse.header.Content-Type": "'"'application/json'"'"}' \
    --response-templates "$("${PYTHON}" -c 'import json, sys; print(json.dumps({"application/json": sys.argv[1]}))' "${NOT_FOUND_BODY}")" \
    >/dev/null
  aws apigateway create-deployment --rest-api-id "${api_id}" --stage-name "${api_stage}" \
    --description "gateway responses" >/dev/null
}

finish() {
  local url="$1" token
  if [[ "${PRINT_ADMIN_TOKEN:-0}" == "1" ]]; then
    token="$(print_admin_token)"
    printf 'Admin token: %s\n' "${token}"
  fi
  printf 'API URL: %s\n' "${url}"
}

# --- commands --------------------------------------------------------------------------

deploy_two_stacks() {
  local data_stack="${APP_NAME}-${STAGE}-data" stream_arn dlq_arn effects_queue_arn feedback_queue_arn bucket url
  local runner_arn journey_events_queue_arn journey_advance_queue_arn journey_event_waits_queue_arn
  preflight
  check_sources
  if stack_exists "${APP_NAME}-${STAGE}"; then
    die "stage '${STAGE}' is deployed as a single stack (${APP_NAME}-${STAGE}); use 'single-stack'"
  fi

  log "deploying data stack ${data_stack}"
  # CAPABILITY_IAM: the stack creates the enrollment runner's role (unnamed, so not
  # CAPABILITY_NAMED_IAM). No package step: the state machine's definition is inline.
  aws cloudformation deploy \
    --stack-name "${data_stack}" \
    --template-file "${DATA_TEMPLATE}" \
    --parameter-overrides "Stage=${STAGE}" \
    --capabilities CAPABILITY_IAM \
    --tags "project=${APP_NAME}" "stage=${STAGE}" \
    --no-fail-on-empty-changeset

  check_table_names "${data_stack}"
  stream_arn="$(stack_output "${data_stack}" EventsStreamArn)"
  dlq_arn="$(stack_output "${data_stack}" EventsDeadLetterQueueArn)"
  effects_queue_arn="$(stack_output "${data_stack}" EffectsQueueArn)"
  messages_queue_arn="$(stack_output "${data_stack}" MessagesQueueArn)"
  transactional_queue_arn="$(stack_output "${data_stack}" TransactionalMessagesQueueArn)"
  feedback_queue_arn="$(stack_output "${data_stack}" FeedbackQueueArn)"
  fanout_queue_arn="$(stack_output "${data_stack}" FanOutQueueArn)"
  bucket="$(stack_output "${data_stack}" DataBucketName)"
  runner_arn="$(stack_output "${data_stack}" EnrollmentRunnerArn)"
  journey_events_queue_arn="$(stack_output "${data_stack}" JourneyEventsQueueArn)"
  journey_advance_queue_arn="$(stack_output "${data_stack}" JourneyAdvanceQueueArn)"
  journey_event_waits_queue_arn="$(stack_output "${data_stack}" JourneyEventWaitsQueueArn)"
  log "events stream ${stream_arn}"
  log "data bucket ${bucket}"
  log "enrollment runner ${runner_arn}"

  ensure_admin_token

  log "chalice deploy --stage ${STAGE}"
  write_deploy_values_into_config "MERCURIO_EVENTS_STREAM_ARN=${stream_arn}" \
    "MERCURIO_DATA_BUCKET=${bucket}" "MERCURIO_ENROLLMENT_RUNNER_ARN=${runner_arn}"
  (cd "${REPO_ROOT}" && "${CHALICE}" deploy --stage "${STAGE}")
  restore_chalice_config
  install_not_found_response

  configure_stream_mapping "${stream_arn}" "${dlq_arn}"
  configure_queue_mapping "${effects_queue_arn}"
  # The messages consumers leave deferred messages on their queues the same way.
  configure_queue_mapping "${messages_queue_arn}" send_messages
  configure_queue_mapping "${transactional_queue_arn}" send_transactional_messages
  configure_queue_mapping "${feedback_queue_arn}" ses_feedback
  configure_queue_mapping "${fanout_queue_arn}" broadcast_fanout
  # The journey runtime's consumers. The signals queue is FIFO: Lambda takes no batching
  # window there (Chalice creates the mapping with the default, 0), and
  # configure_queue_mapping changes nothing but the response types.
  configure_queue_mapping "${journey_events_queue_arn}" journey_events
  configure_queue_mapping "${journey_advance_queue_arn}" journey_advance
  configure_queue_mapping "${journey_event_waits_queue_arn}" journey_event_waits
  upload_templates "${bucket}"

  url="$(cd "${REPO_ROOT}" && "${CHALICE}" url --stage "${STAGE}")"
  finish "${url}"
}

deploy_single_stack() {
  local stack="${APP_NAME}-${STAGE}" out_dir="${REPO_ROOT}/out/${STAGE}" url
  preflight
  check_sources
  [[ -n "${ARTIFACT_BUCKET:-}" ]] || die "single-stack needs ARTIFACT_BUCKET (an S3 bucket in ${AWS_REGION})"
  if stack_exists "${APP_NAME}-${STAGE}-data" || [[ -f "${REPO_ROOT}/.chalice/deployed/${STAGE}.json" ]]; then
    die "stage '${STAGE}' is deployed with the two-stack path (data stack or .chalice/deployed/${STAGE}.json exists)"
  fi

  ensure_admin_token

  log "chalice package --stage ${STAGE} --merge-template infrastructure/single-stack.yaml"
  rm -rf "${out_dir}"
  (cd "${REPO_ROOT}" && "${CHALICE}" package --stage "${STAGE}" \
    --merge-template "${MERGE_TEMPLATE}" "${out_dir}")

  log "uploading the code package to s3://${ARTIFACT_BUCKET}/${APP_NAME}/${STAGE}/"
  aws cloudformation package \
    --template-file "${out_dir}/sam.yaml" \
    --s3-bucket "${ARTIFACT_BUCKET}" \
    --s3-prefix "${APP_NAME}/${STAGE}" \
    --output-template-file "${out_dir}/packaged.yaml" >/dev/null

  log "deploying stack ${stack}"
  # The packaged template (the REST API's definition, every function, the data resources
  # with the state machine's definition) is far beyond the 51,200 bytes a deploy request
  # may carry: CloudFormation reads it from the artifact bucket.
  aws cloudformation deploy \
    --stack-name "${stack}" \
    --template-file "${out_dir}/packaged.yaml" \
    --s3-bucket "${ARTIFACT_BUCKET}" \
    --s3-prefix "${APP_NAME}/${STAGE}" \
    --parameter-overrides "Stage=${STAGE}" \
    --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
    --tags "project=${APP_NAME}" "stage=${STAGE}" \
    --no-fail-on-empty-changeset

  upload_templates "$(stack_output "${stack}" DataBucketName)"
  url="$(stack_output "${stack}" EndpointURL)"
  finish "${url}"
}

teardown() {
  local answer data_stack="${APP_NAME}-${STAGE}-data" single_stack="${APP_NAME}-${STAGE}"
  preflight
  if [[ "${ASSUME_YES:-0}" != "1" ]]; then
    printf "This removes the API and functions of stage '%s'. Type the stage name to confirm: " "${STAGE}" >&2
    read -r answer
    [[ "${answer}" == "${STAGE}" ]] || die "not confirmed"
  fi

  if [[ -f "${REPO_ROOT}/.chalice/deployed/${STAGE}.json" ]]; then
    log "chalice delete --stage ${STAGE}"
    (cd "${REPO_ROOT}" && "${CHALICE}" delete --stage "${STAGE}")
  fi
  local stack
  for stack in "${single_stack}" "${data_stack}"; do
    if stack_exists "${stack}"; then
      log "deleting stack ${stack}"
      aws cloudformation delete-stack --stack-name "${stack}"
      aws cloudformation wait stack-delete-complete --stack-name "${stack}"
    fi
  done

  local parameter
  parameter="$(config_env MERCURIO_ADMIN_TOKEN_PARAMETER)"
  cat >&2 <<EOF
Done. Kept (DeletionPolicy Retain / not managed by CloudFormation):
  DynamoDB tables ${APP_NAME}-${STAGE}-events, ${APP_NAME}-${STAGE}-contacts, ${APP_NAME}-${STAGE}-identities,
    ${APP_NAME}-${STAGE}-definitions, ${APP_NAME}-${STAGE}-memberships, ${APP_NAME}-${STAGE}-deliveries,
    ${APP_NAME}-${STAGE}-messages, ${APP_NAME}-${STAGE}-suppressions, ${APP_NAME}-${STAGE}-enrollments
  S3 bucket ${APP_NAME}-${STAGE}-data-<account id> (uploaded definitions, exports)
  SSM parameters ${parameter} and /${APP_NAME}/${STAGE}/destinations/*
Deleting them destroys the data for good; see docs/DEPLOY.md, Tearing down.
EOF
}

# Undo transient changes (config edit, token file) however the script ends.
TOKEN_FILE=""
cleanup() {
  restore_chalice_config
  if [[ -n "${TOKEN_FILE}" ]]; then
    rm -f "${TOKEN_FILE}"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

case "${COMMAND}" in
  deploy) deploy_two_stacks ;;
  single-stack) deploy_single_stack ;;
  admin-token)
    require_tools
    check_stage
    resolve_region
    print_admin_token
    ;;
  teardown) teardown ;;
  -h | --help | help) usage ;;
  *)
    usage
    die "unknown command '${COMMAND}'"
    ;;
esac
