"""The journey language: every problem at once, with its place; references for the registry."""
from pathlib import Path

import pytest

from chalicelib.domain.definition_errors import DefinitionError, Reference
from chalicelib.domain.journeys.language import parse_journey, read_journey, validate_journey

EXAMPLES = Path(__file__).resolve().parents[3] / "chalicelib" / "definitions" / "journeys"


@pytest.mark.parametrize("name", ["abandoned-cart", "welcome-series"])
def test_the_example_journeys_validate(name):
    journey, references = read_journey((EXAMPLES / f"{name}.yaml").read_text())
    assert journey.id == name
    assert {r.kind for r in references} == {"template"}  # the other examples: tests/unit/test_example_journeys.py


def problems(text):
    with pytest.raises(DefinitionError) as caught:
        parse_journey(text)
    return caught.value


def test_every_problem_is_reported_with_its_place():
    error = problems("""
id: broken
trigger: {event: Product Added}
start: first
nodes:
  first: {wait: 3 dayz, next: mail}
  mail: {send: {template: hello, channel: fax}, next: tag}
  tag: {update: {score: 1}, next: mail}
  orphan: {wait_for: {event: Order Completed, match_key: true}, on_event: first}
  pick: {branch: [{when: {segment: vips}, next: first}], otherwise: nowhere}
""")
    assert error.problems == [
        'nodes.first.wait: "3 dayz" is not a duration: unknown unit "dayz" (did you mean "days"?)',
        'nodes.mail.send.channel: "fax" is not one of email, sms, push',
        "nodes.orphan.wait_for.match_key: the trigger has no key: give the trigger a key "
        "(e.g. key: properties.cart_id) to match it",
        "nodes.orphan.timeout: is required: how long to wait for the event (e.g. 1 hour)",
        "nodes.orphan.on_timeout: is required: the node to go to when the timeout passes",
        'nodes.pick.otherwise: unknown node "nowhere" (nodes: first, mail, tag, orphan, pick)',
        "nodes.orphan: unreachable: no path leads here from the start (first)",
        "nodes.pick: unreachable: no path leads here from the start (first)",
        "nodes.mail: loops without a wait: mail → tag → mail (add a wait in the loop)",
    ]
    assert error.references == (Reference("template", "hello", "nodes.mail.send.template"),
                                Reference("segment", "vips", "nodes.pick.branch[0].when.segment"))


def test_a_loop_through_a_wait_is_fine():
    assert validate_journey("""
id: loop
trigger: {segment_entered: leads}
start: mail
nodes:
  mail: {send: {template: nurture}, next: pause}
  pause: {wait: 7 days, next: mail}
""") == []


def test_misspelt_node_names_get_a_suggestion_and_start_is_checked():
    error = problems("""
id: typo
trigger: {api: true}
start: begin
nodes:
  reminder: {send: {template: r}, next: remindr}
""")
    assert 'start: unknown node "begin" (nodes: reminder)' in error.problems
    assert 'nodes.reminder.next: unknown node "remindr" (did you mean "reminder"?)' in error.problems


def test_triggers_rules_goal_and_exits_are_checked():
    error = problems("""
id: rules
trigger: {schedule: {at: "25:00", weekdays: [mon, funday]}}
entry: {re_entry: sometimes, max_concurrent: 0}
exit: [{segment_exited: Bad Segment}]
goal: {event: Order Completed, segment: buyers, within: 2 months}
start: a
nodes:
  a: {exit: true}
""")
    assert error.problems == [
        'entry.re_entry: expected never, always or "after <duration>" (e.g. "after 30 days"), got "sometimes"',
        "entry.max_concurrent: expected a whole number of at least 1, got 0",
        'trigger.schedule.at: "25:00" is not a time of day: write hours and minutes such as "09:00"',
        'trigger.schedule.weekdays[1]: "funday" is not a day: use mon, tue, wed, thu, fri, sat, sun',
        "trigger.schedule: a schedule enrolls the contacts of a segment: name it in entry.segment",
        'exit[0].segment_exited: "Bad Segment" is not a segment id (lowercase letters, digits and hyphens)',
        "goal: name either an event or a segment, not both or neither",
        'goal.within: "2 months" is not a duration: months differ in length; write days instead (e.g. 30 days)',
    ]


def test_experiment_and_split_shares_are_checked():
    error = problems("""
id: tests
trigger: {event: X}
start: s
nodes:
  s: {split: [{percent: 60, next: e}, {percent: 30, next: e}]}
  e: {experiment: subject, arms: {A: 50, B: 50}, next: {A: x, C: x}}
  x: {exit: true}
""")
    assert error.problems == ["nodes.s.split: the percentages must sum to 100, they sum to 90",
                              "nodes.e.next.B: is required: the node this arm goes to",
                              'nodes.e.next.C: no arm "C" in arms (A, B)']


def test_keyed_trigger_and_entry_segment_become_a_journey():
    journey, references = read_journey("""
id: keyed
trigger: {event: Product Added, key: properties.cart_id}
entry: {re_entry: after 30 days, max_concurrent: 3, segment: shoppers}
goal: {segment: buyers, within: 7 days, exit: false}
start: notify
nodes:
  notify: {notify: {destination: crm-hook}}
""")
    assert journey.trigger.key == "properties.cart_id" and journey.entry.max_concurrent == 3
    assert journey.entry.re_entry == "after" and journey.entry.re_entry_after.days == 30
    assert journey.goal.exit is False
    assert {(r.kind, r.name) for r in references} == {("segment", "shoppers"), ("segment", "buyers"),
                                                      ("destination", "crm-hook")}


def test_a_send_may_name_a_coupon_pool_which_is_checked_for_its_form_only():
    journey, references = read_journey("""
id: bday
trigger: {segment_entered: birthday-today}
start: mail
nodes:
  mail: {send: {template: birthday, channel: email, coupon: birthday-2027}}
""")
    assert journey.node("mail").coupon == "birthday-2027"
    # Pools are not definitions: nothing for the registry to resolve.
    assert {(r.kind, r.name) for r in references} == {("segment", "birthday-today"), ("template", "birthday")}
    error = problems("""
id: bday
trigger: {event: Signed Up}
start: mail
nodes:
  mail: {send: {template: birthday, coupon: Birthday Pool, cupon: x}, next: plain}
  plain: {send: {template: thanks, coupon: 7}}
""")
    assert error.problems == [
        'nodes.mail.send.cupon: unknown field (did you mean "coupon"?)',
        'nodes.mail.send.coupon: "Birthday Pool" is not a coupon pool name (1 to 64 lowercase letters, digits, '
        '_ and -, e.g. birthday)',
        "nodes.plain.send.coupon: 7 is not a coupon pool name (1 to 64 lowercase letters, digits, _ and -, "
        "e.g. birthday)"]
    assert parse_journey("id: j\ntrigger: {event: A}\nstart: m\nnodes:\n  m: {send: {template: t}}\n"
                         ).node("m").coupon is None


def test_not_yaml_is_a_clear_problem():
    assert validate_journey("id: [unclosed") and validate_journey("just text") == [
        'document: expected a mapping with id, name, trigger, start and nodes, got "just text"']
