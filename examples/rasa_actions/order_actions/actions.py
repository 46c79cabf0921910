"""Order actions, written with rasa-sdk exactly as for a Rasa assistant.

Run them with the action server: `python -m rasa_sdk --actions order_actions` from
`examples/rasa_actions/` (in an environment with `pip install rasa-sdk`).

The "order database" is `orders.json`; cancellations are kept in memory (a restart of the
action server forgets them), which is enough for a demo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

ORDERS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).with_name("orders.json")).read_text(encoding="utf-8")
)


def _order(tracker: Tracker) -> tuple[str, dict[str, Any] | None]:
    number = str(tracker.get_slot("order_id") or "").strip()
    return number, ORDERS.get(number)


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        number, order = _order(tracker)
        if order is None:
            dispatcher.utter_message(
                text=f"I can't find an order {number}. Please check the number."
            )
            return [SlotSet("order_id", None)]
        status = order["status"]
        if status == "lost":
            dispatcher.utter_message(
                text=f"Order {number} ({order['item']}) seems to be lost in transit. "
                "I'm getting a person to sort this out for you."
            )
            return [SlotSet("order_status", status), ConversationPaused()]
        if status == "shipped":
            text = (
                f"Order {number} ({order['item']}) shipped with {order['carrier']} and "
                f"should arrive by {order['eta']}."
            )
        elif status == "delivered":
            text = f"Order {number} ({order['item']}) was delivered on {order['delivered']}."
        elif status == "cancelled":
            text = f"Order {number} ({order['item']}) is cancelled; the refund is on its way."
        else:
            text = f"Order {number} ({order['item']}) is being prepared; it hasn't shipped yet."
        # The text for people; the JSON for a page that renders an order card.
        card = {"type": "order", "order_id": number, "status": status, "item": order["item"]}
        dispatcher.utter_message(text=text, json_message=card)
        return [SlotSet("order_status", status)]


class ActionCancelOrder(Action):
    def name(self) -> str:
        return "action_cancel_order"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        number, order = _order(tracker)
        if order is None:
            dispatcher.utter_message(text=f"I can't find an order {number}.")
            return [SlotSet("order_id", None)]
        if order["status"] != "processing":
            dispatcher.utter_message(
                text=f"Order {number} can't be cancelled any more (it is {order['status']}). "
                "You can return it instead.",
                buttons=[{"title": "How do returns work?", "payload": "/returns"}],
            )
            return []
        order["status"] = "cancelled"
        dispatcher.utter_message(text=f"Done: order {number} is cancelled.")
        # Show the new status too: a followup action, as Rasa chains them.
        return [SlotSet("last_cancelled", number), FollowupAction("action_order_status")]
