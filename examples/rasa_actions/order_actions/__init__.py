"""Example business actions for Switchboard: order status and cancellation (rasa-sdk)."""
