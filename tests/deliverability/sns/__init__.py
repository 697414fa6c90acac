"""Tests of POST /webhooks/ses/ (Amazon SNS) and the processing of the SES events it receives."""
