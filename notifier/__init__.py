"""The notifier: delivers the notification outbox to the source systems' webhooks."""
