"""The local inbox against moto's server (the emulator `make run` starts): an email sent as
raw MIME through SES v2, an SMS and a push through SNS, read back from /_inbox.json and
/_inbox as the demo shop's server serves them."""
from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.request
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import boto3
import pytest

from local.inbox import Inbox, messages_from_moto
from local.run import Emulator, demo_shop_handler


@pytest.fixture(scope="module")
def emulator():
    server = Emulator(0)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def shop(emulator):
    inbox = Inbox(emulator)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             demo_shop_handler("http://api.invalid", "key-0001", inbox))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def client(service, url):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1")


def mime(subject: str) -> bytes:
    message = MIMEMultipart("alternative")
    message["From"], message["To"], message["Subject"] = "Shop <news@shop.example>", "ada@example.com", subject
    message["List-Unsubscribe"] = "<https://mercurio.example/u/abc>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.attach(MIMEText("Hello Ada (https://shop.example/offers/coffee)", "plain", "utf-8"))
    message.attach(MIMEText('<p>Hello <b>Ada</b> <a href="https://shop.example/offers/coffee">Offer</a>'
                            '<script>alert(1)</script></p>', "html", "utf-8"))
    return message.as_bytes()


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers, response.read().decode("utf-8")


def test_the_inbox_lists_emails_sms_and_push_newest_first_with_headers(emulator, shop):
    ses = client("sesv2", emulator)
    ses.create_email_identity(EmailIdentity="news@shop.example")
    ses.send_email(FromEmailAddress="news@shop.example", Destination={"ToAddresses": ["ada@example.com"]},
                   Content={"Raw": {"Data": mime("Welcome, Ada")}})
    _, page = get(shop + "/_inbox.json")
    first_seen = json.loads(page)["messages"]
    assert [m["subject"] for m in first_seen if m["channel"] == "email"] == ["Welcome, Ada"]

    sns = client("sns", emulator)
    sns.publish(PhoneNumber="+393331234567", Message="Your code is 123456")
    app = sns.create_platform_application(Name="shop-app", Platform="GCM",
                                          Attributes={"PlatformCredential": "key"})["PlatformApplicationArn"]
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=app, Token="device-token-1")["EndpointArn"]
    sns.publish(TargetArn=endpoint, MessageStructure="json", Message=json.dumps(
        {"default": "Your order shipped", "GCM": json.dumps({"notification": {"title": "Order A-1",
                                                                             "body": "It is on its way"}})}))

    headers, body = get(shop + "/_inbox.json")
    assert headers["Content-Type"] == "application/json"
    messages = json.loads(body)["messages"]
    by_channel = {m["channel"]: m for m in messages}
    assert set(by_channel) == {"email", "sms", "push"}
    assert messages[-1]["channel"] == "email", "the email was seen first: it is listed last"
    mail = by_channel["email"]
    assert mail["from"] == "news@shop.example" and "ada@example.com" in mail["to"]
    assert mail["headers"]["From"] == "Shop <news@shop.example>"
    assert mail["headers"]["List-Unsubscribe"] == "<https://mercurio.example/u/abc>"
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "<b>Ada</b>" in mail["html"] and mail["text"].startswith("Hello Ada")
    assert (by_channel["sms"]["to"], by_channel["sms"]["text"]) == ("+393331234567", "Your code is 123456")
    assert (by_channel["push"]["title"], by_channel["push"]["body"]) == ("Order A-1", "It is on its way")
    assert by_channel["push"]["token"] == "device-token-1"


def test_the_html_page_shows_headers_and_the_email_in_a_sandboxed_iframe(emulator, shop):
    ses = client("sesv2", emulator)
    ses.create_email_identity(EmailIdentity="news@shop.example")
    ses.send_email(FromEmailAddress="news@shop.example", Destination={"ToAddresses": ["ada@example.com"]},
                   Content={"Raw": {"Data": mime("Your coffee offer")}})
    client("sns", emulator).publish(PhoneNumber="+393339876543", Message="Offer: -20% <today>")
    headers, page = get(shop + "/_inbox")
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script runs
    assert "Your coffee offer" in page and "List-Unsubscribe=One-Click" in page
    assert "Offer: -20% &lt;today&gt;" in page  # SMS text escaped
    iframes = re.findall(r"<iframe ([^>]*)>", page)
    assert iframes, "each email's HTML is shown in an iframe"
    for attributes in iframes:
        sandbox = re.search(r'sandbox="([^"]*)"', attributes).group(1).split()
        assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
        assert "allow-popups" in sandbox  # links open (in a new tab)
    srcdoc = re.search(r'srcdoc="([^"]*)"', iframes[0]).group(1)
    assert "&lt;base target=&quot;_blank&quot;&gt;" in srcdoc
    assert "https://shop.example/offers/coffee" in srcdoc
    assert "<script>" not in page.replace(srcdoc, "")  # the email's markup only inside srcdoc, escaped


def test_moto_simple_sends_and_an_empty_emulator_are_read_too():
    data = {"ses": {"Message": [{"id": "m-1", "source": "a@shop.example", "subject": "Hi", "body": "<p>x</p>",
                                 "destinations": {"ToAddresses": ["b@example.com"]}}]}}
    assert messages_from_moto(data) == [{"channel": "email", "id": "m-1", "from": "a@shop.example",
                                         "to": ["b@example.com"], "subject": "Hi",
                                         "headers": {"From": "a@shop.example", "Subject": "Hi"},
                                         "html": "<p>x</p>", "text": None}]
    assert messages_from_moto({}) == []
