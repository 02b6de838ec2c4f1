"""Mercurio's Chalice app: it only registers the entry points (chalicelib/entrypoints)."""
from __future__ import annotations

from chalice import Chalice

from chalicelib.entrypoints.admin import admin_api
from chalicelib.entrypoints.broadcasts import broadcasts_api
from chalicelib.entrypoints.content import content_api
from chalicelib.entrypoints.coupons import coupons_api
from chalicelib.entrypoints.definitions import definitions_api
from chalicelib.entrypoints.deliveries import deliveries_api
from chalicelib.entrypoints.effects import effects_handlers
from chalicelib.entrypoints.feedback import feedback_handlers
from chalicelib.entrypoints.http import observe_http
from chalicelib.entrypoints.journeys import journeys_api
from chalicelib.entrypoints.journey_runner import journey_runner
from chalicelib.entrypoints.messages import message_handlers
from chalicelib.entrypoints.messages_public import PIXEL_ACCEPT_TYPES, messages_public
from chalicelib.entrypoints.privacy import privacy_api
from chalicelib.entrypoints.confirmations import confirmations_api
from chalicelib.entrypoints.schedules import scheduled_jobs
from chalicelib.entrypoints.stream import stream_handlers
from chalicelib.entrypoints.templates import templates_api
from chalicelib.entrypoints.tracking import tracking_api

app = Chalice(app_name="mercurio", configure_logs=False)
app.register_middleware(observe_http, "http")
app.api.binary_types.extend(t for t in PIXEL_ACCEPT_TYPES if t not in app.api.binary_types)
app.register_blueprint(tracking_api)
app.register_blueprint(admin_api)
app.register_blueprint(definitions_api)
app.register_blueprint(templates_api)
app.register_blueprint(deliveries_api)
app.register_blueprint(stream_handlers)
app.register_blueprint(effects_handlers)
app.register_blueprint(message_handlers)
app.register_blueprint(scheduled_jobs)
app.register_blueprint(content_api)
app.register_blueprint(messages_public)
app.register_blueprint(feedback_handlers)
app.register_blueprint(privacy_api)
app.register_blueprint(broadcasts_api)
app.register_blueprint(confirmations_api)
app.register_blueprint(journeys_api)
app.register_blueprint(journey_runner)
app.register_blueprint(coupons_api)
