"""The `harm` stage (input): requests for help to do harm, declined with a policy reply; and
the `claims` stage (output): answers that claim an action the bot did not take, rewritten.

`harm` judges what the customer asks the bot to help with, not the words in it: "someone used
my card without permission" and "I lost my receipt, can I still return?" are customers to
help; "how do I make a fake receipt so I can return it" and "what do I say so you don't
investigate" are not. Each category is a set of named rules, each an act joined to what makes
it harmful (a deception, a victim, a weapon):

- `fraud`: forged receipts, invoices and confirmations, chargebacks on goods kept, someone
  else's card or account, phishing and impersonation, fake reviews, fake accounts;
- `returns_abuse`: worn or used goods returned as new, swapped or empty parcels, a delivered
  parcel claimed lost, goods bought elsewhere;
- `dangerous`: weapons and explosives, poisoning or hurting someone, breaking into accounts,
  finding or tracking a person, drugs;
- `self_harm`: a customer who speaks of hurting or killing themselves gets a caring reply,
  crisis lines and the offer of a person, not a refusal;
- `illegal`: lying on customs forms, smuggling, laundering money.

The rules read the text as the injection stage does (`injection.normalise`: lower case,
accents off), in English and, for the commonest forms, French, German and Spanish. Measured
with `bench/safety.py` on sets written for it (`bench/data/safety/`), split in halves by a
hash: the rules were written on the "tune" half; the figures it prints for "held-out" are
the ones to trust.

`claims` reads every released piece of an answer: a sentence that says the bot changed,
cancelled, refunded, sent or deleted something ("I've changed your email", "your order has
been cancelled") is replaced by `claims.reply` unless an action really ran in this turn
(`Context.acted`, set for a business action's reply). Instructions and facts ("you can
change your email in Account settings", "refunds are issued within 5 days") pass.
"""

# ruff: noqa: E501  (regular expressions read best whole, a rule a line)

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from policies.base import Context, Strict
from policies.injection import UserPattern, normalise
from policies.semantic import LinearJudge
from policies.verdicts import Allow, Block, Finding, Verdict

Category = Literal["fraud", "returns_abuse", "dangerous", "self_harm", "illegal"]
CATEGORIES: tuple[Category, ...] = ("fraud", "returns_abuse", "dangerous", "self_harm", "illegal")

_OTHERS = (
    r"(?:her|his|their|someone(?: else)?'?s?|somebody(?: else)?'?s?|other people'?s|another"
    r" (?:person|customer)'?s?|my (?:ex|roommate|flatmate|girlfriend|boyfriend|wife|husband"
    r"|partner|neighbou?r|boss|friend|coworker|colleague|sister|brother|mom|dad|mother|father)"
    r"(?:'?s)?)"
)
_HIDDEN = (
    r"(?:without (?:getting caught|being caught|(?:them|her|him|anyone|anybody|the owner|security"
    r"|the bank|you|the warehouse) (?:knowing|noticing|finding out|finding (?:it|them)|seeing)"
    r"|it being obvious|anyone noticing|a trace|leaving a trace)|so (?:that )?(?:they|nobody"
    r"|no one|you|the bank|the warehouse|security|she|he) (?:don'?t|doesn'?t|won'?t|can'?t"
    r"|wouldn'?t|never) (?:notice|check|investigate|find out|see|catch|flag|know|suspect)"
    r"|(?:she|he|they|nobody|no one) (?:won'?t|will never|wouldn'?t) (?:notice|know|find out)"
    r"|(?:make|making) (?:it|the claim|the story|them|this) (?:look |sound )?(?:believable|real"
    r"|legit(?:imate)?|genuine|convincing)|don'?t look fake|get (?:it|them) past (?:the )?"
    r"inspection|avoid (?:getting )?(?:caught|detected|flagged)"
    r"|sans (?:me |se )?faire (?:prendre|remarquer)|sans qu'(?:ils|on|elle|il) (?:le )?remarque"
    r"|ohne dass (?:es )?(?:jemand|sie|er|man) (?:es )?(?:merkt|bemerkt)"
    r"|sin que (?:se den cuenta|lo noten|nadie (?:se de cuenta|lo note)|se note)"
    r"|ohne dass es auffallt|sans que (?:ca|cela) se (?:voie|remarque)"
    r"|(?:your |the )?(?:warehouse|you|they|staff|inspectors?) (?:won'?t|wouldn'?t|don'?t|doesn'?t"
    r"|will not) (?:notice|see|find out|be able to tell|spot)"
    r"|(?:so )?(?:nobody|no one|noone) (?:can |could |will )?(?:trace|track|tell)s?"
    r"|make it look like (?:i|we|it was|it'?s|the|my) (?:ordered|bought|paid|returned|sent|within"
    r"|was|were|damaged|broken|defective|new))"
)
_FORGE = (
    r"(?:generate|make|create|write|forge|fake|print|design|draft|produce|edit|photoshop|alter"
    r"|modify|change)"
)
_DOCUMENT = (
    r"(?:receipts?|invoices?|order confirmations?|confirmation emails?|proof of (?:purchase"
    r"|payment|delivery)|delivery confirmations?|bank statements?|ids?|id cards?|shipping labels?"
    r"|tracking (?:numbers?|pages?))"
)

# Asking how to do something: the request form most harmful requests take.
_HOW_TO = (
    r"(?:how (?:do|can|could|would|should|to|might) (?:i|we|you|one|someone|somebody)?|help me"
    r"|tell me how|show me how|teach me|explain how|what'?s the (?:best|easiest|quickest|safest"
    r"|fastest) way|is there a way|any (?:tips|tricks|ideas)|give me (?:tips|a way|a script"
    r"|instructions|step[- ]by[- ]step|a guide|a method)|walk me through|i (?:want|need) to"
    r"|can you (?:help|tell|show|write|make|create|give))"
)
# What makes such a request harmful, unless the customer is its victim ("report a scam",
# "my card was stolen", "is this a scam?").
_HARMFUL_ACT = (
    r"(?<!report )(?<!avoid )(?<!spot )(?<!was )(?<!were )(?<!been )(?<!got )(?<!a )(?<!an )"
    r"(?<!this )(?<!the )(?:fake|forge|forged|counterfeit|scam|defraud|swindle|cheat (?:the|your"
    r"|northwind|the system)|steal|shoplift|pickpocket|get away with|without getting caught"
    r"|without (?:paying|them knowing|anyone knowing|being caught)|not get caught|cover (?:my"
    r"|our) tracks|untraceable|launder|hack into|break into|poison|stab|kidnap"
    r"|blackmail|extort|bomb|explosive|detonat\w*|thermite|ricin|cyanide|arsenic|nerve agent"
    r"|molotov|ghost gun|silencer|suppressor|meth|fentanyl|lie to (?:the|my|your|customs"
    r"|paypal|the bank)|pretend (?:it|that it|the parcel|the package|the item) (?:never|was"
    r"|wasn'?t)|trick (?:the|your|a|customers|people|them))\b"
)

# A message that asks for help or a way ("how do I", "is there a way", "asking for a
# friend"); and one that tells of the customer as the victim ("someone used my card", "I got
# a phishing email", "report"): the meaning classifier's lower threshold needs the first and
# neither of its thresholds applies to the second.
_ASKS = re.compile(
    r"\b(?:how (?:do|can|could|would|should|to|might|much|many)|help me|is there a way|what'?s"
    r" the (?:best|easiest|quickest|safest|fastest|cheapest) way|tell me|show me|teach me"
    r"|explain|asking for a friend|my (?:friend|buddy|cousin|brother|sister) (?:wants|needs"
    r"|asked)|hypothetically|what would (?:stop|happen)|can i|could i|should i|would it|will"
    r" you|can you|could you|give me|any (?:tips|tricks|ideas)|i (?:want|need|plan) to|i'?m"
    r" (?:going|planning) to|wie kann|comment (?:puis|faire)|como (?:puedo|hago)|c'?est"
    r" possible|es posible|ist es moglich)\b"
)
_VICTIM = re.compile(
    r"\b(?:someone|somebody|they|scammers?|hackers?|a thief) (?:used|stole|hacked|took|charged"
    r"|ordered|placed|opened|changed|got into)\b|\b(?:was|were|been|got) (?:stolen|hacked"
    r"|charged|compromised|scammed|phished|leaked|breached)\b|\bi (?:got|received) (?:a|an"
    r"|this) (?:\w+ )?(?:email|text|sms|call|message)\b|\breport\b|\bis (?:this|it|that) (?:a"
    r" scam|legit|real|from you|safe)\b|\bwithout my (?:permission|consent|knowledge)\b|\bi"
    r" didn'?t (?:place|order|make|authori[sz]e)\b"
)

RULES: dict[Category, tuple[tuple[str, str], ...]] = {
    "fraud": (
        ("how-to-harm", r"\b" + _HOW_TO + r"\b[^\n]{0,100}?\b" + _HARMFUL_ACT),
        (
            "refund-and-keep",
            r"\b(?:keep|keeping) (?:the (?:\w+ )?(?:item|items|goods|product|stuff|jacket|boots|shoes"
            r"|order)|it|them|everything|both)\b[^\n]{0,40}?\b(?:and|but|while|plus) (?:still )?"
            r"(?:get|getting|receive|claim)\w* (?:a |my |the |full )?(?:refund|money back"
            r"|replacement)|\b(?:refund|money back|replacement)\b[^\n]{0,40}?\b(?:and|but|while)"
            r" (?:still )?keep(?:ing)? (?:the|it|them|everything|both)\b",
        ),
        (
            "even-though",
            r"\b(?:refund|replacement|money back|chargeback|dispute|claim|credit)\b[^\n]{0,80}?"
            r"\b(?:even though|although|though|but) (?:i|it|they|ups|the (?:parcel|package|item"
            r"|tracking))\b[^\n]{0,40}?\b(?:actually|really|did|was|were) (?:\w+ )?(?:got|get"
            r"|received|receive|delivered|arrived|have|use|used|wore|worn)\b",
        ),
        ("fake-document", r"\bfake[ds]? " + r"(?:\w+ )?" + _DOCUMENT + r"\b"),
        (
            "forged-document",
            r"\b" + _FORGE + r"\b[^.!?\n]{0,30}?\b" + _DOCUMENT + r"\b[^.!?\n]{0,80}?(?:never"
            r" (?:bought|ordered|paid|purchased)|didn'?t (?:buy|pay|order)|showing (?:that )?i"
            r" paid|(?:show|send) (?:it )?to (?:my |the )?(?:bank|insurance|employer|boss)|for"
            r" (?:an |my )?(?:insurance|expense) claim|look (?:real|legit|genuine|official)"
            r"|(?:higher|different|bigger) (?:amount|price|total))"
            r"|\b(?:change|edit|alter|fake|modify|photoshop)\b[^.!?\n]{0,20}?\b(?:the )?(?:delivery |order"
            r" |purchase |return )?dates? on\b|\b(?:edit|alter|fake|modify|photoshop) (?:the |my |a )?"
            r"(?:screenshot|tracking screenshot|receipt|label|photo of the receipt)",
        ),
        (
            "chargeback-kept",
            r"\b(?:chargebacks?|dispute|reverse the charge|charge ?back|claim)\b[^\n]{0,120}?"
            r"(?:actually (?:got|received|have)|did (?:get|receive)|keep(?:ing)? (?:the|it|them"
            r"|my|both|everything|the stuff)|(?:ups|fedex|dhl|tracking|it) (?:shows?|says?|said)"
            r" (?:it )?(?:was )?delivered|even though (?:it|they|i|ups|the)[^.]{0,30}?"
            r"(?:delivered|received|got|arrived))"
            r"|\b(?:keep(?:ing)? (?:the|it|them|my|both)[^.!?\n]{0,40}?\b(?:chargeback|dispute"
            r"|reverse the charge|refund))",
        ),
        (
            "false-claim",
            r"\b(?:false|fake|fraudulent|bogus) (?:claim|dispute|chargeback|complaint|report)s?\b"
            r"|\b(?:reclamacion|reclamation|reklamation|denuncia|declaration) (?:falsa|fausse"
            r"|falsche)\b|\b(?:falsa|fausse|falsche) (?:reclamacion|reclamation|reklamation"
            r"|rechnung|factura|facture|quittung|declaration)\b"
            r"|\bno reconozco el cargo,? aunque\b|\b(?:good|believable|convincing) (?:story|excuse"
            r"|reason|lie)\b[^.!?\n]{0,40}?\b(?:bank|paypal|chargeback|refund|reverse)",
        ),
        (
            "others-card",
            r"\b(?:use|using|keep using|spend|charge|order with|pay with|reset|get into|log ?in"
            r"(?:to)?|access|take over|empty|drain)\b[^.!?\n]{0,30}?\b" + _OTHERS + r" (?:\w+ )?"
            r"(?:card|account|password|gift ?card|paypal|wallet|login|saved card)s?\b"
            r"[^.!?\n]{0,80}?(?:won'?t notice|doesn'?t know|is away|without (?:her|his|their"
            r"|them) (?:knowing|permission|consent|noticing)|so i can|behind (?:her|his|their)"
            r" back)",
        ),
        (
            "stolen-card",
            r"\b(?:use|using|spend|spending|sell|resell|cash out|change the name on|activate"
            r"|test)\b[^.!?\n]{0,50}?\b(?:(?:i|you|we) (?:found|stole|nicked|swiped|picked up)"
            r"|stolen|from a stolen|found on the street|someone dropped)\b"
            r"|\b(?:stolen|found) (?:credit |debit |gift )?cards?\b[^.!?\n]{0,60}?\b(?:does your"
            r" site check|will it work|go through|get past|check the billing)",
        ),
        (
            "phishing",
            r"\b(?:write|create|make|build|design|draft|give me|set up|send out|need|code)\b"
            r"[^.!?\n]{0,20}?\bphishing (?:page|email|site|kit|message|text|sms|link|campaign)s?\b"
            r"|\b(?:write|create|make|build|design|draft|give me|send)\b[^.!?\n]{0,20}?\b(?:an? )?"
            r"(?:email|text|sms|message|page|site|website|script|call script|letter)s?\b"
            r"[^.!?\n]{0,60}?\b(?:(?:looks?|appears?) (?:like|as if) (?:it(?:'s| is)? )?(?:comes?"
            r" )?from|pretending|posing|impersonat\w*|claiming to be|asking (?:customers|people"
            r"|them|users) (?:to|for)|that steals|to steal|so they (?:read|give|send|enter))"
            r"|\b(?:how (?:do|can|could) i|help me|script for|i (?:want|need) to|tips (?:for|on))\b"
            r"[^.!?\n]{0,60}?\bpretend(?:ing)? to be (?:from )?(?:northwind|support|the bank|your company|you|a"
            r" courier|customer service)\b[^.!?\n]{0,60}?\b(?:code|password|card|pin|details|pay)",
        ),
        (
            "fake-reviews",
            r"\b(?:write|generate|create|post|make|buy|need|get)\b[^.!?\n]{0,30}?\b(?:\d+|some|a few"
            r"|ten|twenty|fifty|dozens of|hundreds of|lots of|five[- ]star|5[- ]star|positive"
            r"|fake)\b[^.!?\n]{0,20}?\breviews?\b[^.!?\n]{0,80}?(?:my |our |his |her |for my|in"
            r" different (?:voices|names|styles)|from different accounts|don'?t look fake|look"
            r" (?:real|genuine|natural))|\b(?:write|post|leave)\b[^.!?\n]{0,20}?\bfake reviews?\b",
        ),
        (
            "fake-accounts",
            r"\b(?:create|make|open|set up|register|sign up)\b[^.!?\n]{0,10}?\b(?:\d+|multiple|many"
            r"|several|fifty|twenty|ten|lots of|a bunch of|fake|dozens of|hundreds of)"
            r" (?:\w+ )?(?:accounts|emails|email addresses|profiles)\b",
        ),
        (
            "card-testing",
            r"\b(?:bin|card) ranges?\b|\b(?:weakest|weak|no|without|lax) (?:fraud|security|3d"
            r" ?secure|cvv|address) (?:checks?|verification)\b|\bget (?:past|around) (?:the |your )?"
            r"(?:fraud|security|address|avs|3d ?secure|cvv) (?:checks?|filter|system)",
        ),
        (
            "deception",
            r"\b(?:scam|con|trick|fool|cheat|defraud)\b[^.!?\n]{0,30}?\b(?:customers?"
            r"|people|the (?:bank|system|warehouse|store)|northwind|you(?:r company)?)\b[^.!?\n]{0,40}?"
            r"(?:into|so|out of)\b",
        ),
        (
            "coupon-abuse",
            r"\b(?:referral|sign-?up|welcome|first[- ]order) (?:bonus|discount|code"
            r"|credit)\b[^.!?\n]{0,40}?\b(?:each time|every time|again and again|multiple times"
            r"|over and over|unlimited)",
        ),
        (
            "bought-card-data",
            r"\b(?:card numbers|card (?:data|details|dumps)|cards?|cvvs?|fullz)\b[^.!?\n]{0,30}?\b(?:i|we)"
            r" (?:bought|purchased|got|found|scraped)\b|\bbought (?:some |a list of |a bunch of )?"
            r"(?:stolen )?(?:card numbers|card (?:data|details)|credit cards)\b|\bkreditkartendaten"
            r" gekauft\b|\bdatos de tarjetas? (?:comprados|robados)\b|\bnumeros de cartes? (?:achetes"
            r"|voles)\b|\bwithout (?:the )?(?:cvv|cvc|security code|3d ?secure|card verification)\b",
        ),
        (
            "identity-theft",
            r"\bin (?:their|his|her|someone else'?s|somebody else'?s|another person'?s) name\b"
            r"|\bsomeone'?s (?:ssn|social security|driver'?s licen[cs]e|passport|id|identity)\b"
            r"|\b(?:ssn|social security number|driver'?s licen[cs]e)\b[^.!?\n]{0,60}?\b(?:open|create"
            r"|apply|sign up|register)",
        ),
        (
            "repeat-discounts",
            r"\b(?:keep getting|get (?:it|them) again|reuse|re-use|stack|use (?:it|them|the (?:same )?"
            r"(?:code|coupon|gift card(?: code)?))\b[^.!?\n]{0,20}?\b(?:twice|again|multiple times"
            r"|\d+ times|many times|over and over))\b[^.!?\n]{0,60}?\b(?:discount|coupon|code|promo"
            r"|bonus|gift card|voucher|welcome)|\b(?:discount|coupon|code|promo|bonus|voucher|welcome"
            r" (?:coupon|code|discount))s?\b[^.!?\n]{0,80}?\b(?:(?:different|other|new|my \w+'?s?)"
            r" emails?|(?:like |about )?\d+ times|multiple (?:accounts|orders|times)|each time"
            r"|every time)\b",
        ),
        (
            "made-up-codes",
            r"\b(?:generate|create|make|invent|give me)\b[^.!?\n]{0,30}?\b(?:valid|working"
            r"|valid-looking|real-looking|active)\b[^.!?\n]{0,30}?\b(?:gift ?card|coupon|voucher"
            r"|card|promo) (?:codes?|numbers?)\b",
        ),
        (
            "borrowed-evidence",
            r"\b(?:someone else'?s|another (?:person|customer)'?s|a stock|a random|from the internet"
            r"|from google)\b[^.!?\n]{0,40}?\b(?:photo|picture|image|pic)s?\b|\b(?:photo|picture"
            r"|image)s?\b[^.!?\n]{0,60}?\b(?:as (?:mine|my own)|from the internet)\b",
        ),
        (
            "hidden",
            r"\b(?:refund|chargeback|dispute|claim|return|receipt|invoice|card|account"
            r"|password|code|review)s?\b[^\n]{0,100}?" + _HIDDEN,
        ),
    ),
    "returns_abuse": (
        (
            "worn-as-new",
            r"\b(?:wore|worn|wear|wearing|used|using|use)\b[^\n]{0,120}?\b(?:look (?:new|unused"
            r"|unworn|brand new)|tags? back|reattach\w*|re-?tag|get (?:it|them) past (?:the )?"
            r"inspection|nobody (?:checks|notices|will know)|make (?:it|them) look|as new|pass"
            r" (?:it|them) off)|\b(?:tags? back on|reattach\w* (?:the )?tags?)\b[^\n]{0,80}?"
            r"\breturn|\b(?:remettre|recoudre) l'etiquette\b|\bcomme neu(?:ve|f)\b[^\n]{0,40}?"
            r"\bretourn|\bwie neu\b[^\n]{0,40}?\bzuruck|\bcomo nuev[ao]\b[^\n]{0,40}?\bdevol"
            r"|\b(?:photo shoot|instagram|wedding|party|event|trip|festival)\b[^\n]{0,80}?\b(?:send"
            r" (?:it |them |all \w+ )?back|return (?:it|them|all))\b[^\n]{0,60}?(?:inspection"
            r"|nobody|notice|check)",
        ),
        (
            "use-then-return",
            r"\b(?:use|wear|take|try) (?:it|them|the (?:\w+ )?(?:gear|item|jacket|tent|boots|stuff))\b"
            r"[^.!?\n]{0,60}?\b(?:return|send (?:it |them )?back)\b[^.!?\n]{0,30}?\b(?:as (?:unused"
            r"|new|unworn)|for a full refund|like (?:it was )?new)",
        ),
        (
            "self-damage",
            r"\b(?:broke|damaged|ripped|tore|scratched|dropped|cracked|stained|burned) (?:it|them|the"
            r" \w+)? ?(?:myself|ourselves)\b[^\n]{0,80}?\b(?:describe|say|claim|count as|pretend"
            r"|make it look|call it|defect|faulty)",
        ),
        (
            "false-condition",
            r"\b(?:say|claim|tell you|pretend|report) (?:that )?(?:it|they|the \w+) (?:was|were|is"
            r"|are|arrived|came) (?:\w+ )?(?:damaged|broken|defective|faulty|wrong|missing|torn"
            r"|used)\b[^\n]{0,80}?(?:not (?:actually|really)|it'?s not|it isn'?t|they'?re not|wasn'?t"
            r" really|even though|but it (?:was|is)n'?t)",
        ),
        (
            "swapped-parcel",
            r"\b(?:empty box|rocks|bricks|stones|weights?|sand|old (?:\w+ )?(?:one|pair|tent|jacket"
            r"|boots|shoes)|worn-out|knock-?off|fake|counterfeit|cheap (?:copy|version|one)"
            r"|different (?:item|one|product)|replica|caja vacia|carton vide|leeren? (?:karton"
            r"|schachtel|kiste|box|paket))\b[^\n]{0,80}?\b(?:devolver|retourner|zuruck\w*|etiqueta|box|parcel|package"
            r"|return|send (?:it )?back|swap|label)\b"
            r"|\bswap\w*\b[^\n]{0,60}?\b(?:with|for) (?:the |a |my )?(?:cheap|fake|knock-?off|old"
            r"|counterfeit|used|broken)",
        ),
        (
            "never-arrived-lie",
            r"\b(?:say|claim|report|pretend|tell you|mark|act like|state)\b[^\n]{0,40}?\b(?:never"
            r" (?:arrived|came|got here)|not received|didn'?t (?:arrive|come|get it)|(?:is |was )?"
            r"missing|(?:got |was )?lost|stolen)\b[^\n]{0,120}?(?:\b(?:but|though|although|even"
            r" though|actually)\b[^\n]{0,40}?\b(?:delivered|arrived|got it|received|have it)"
            r"|\bso (?:you|i|they) (?:send|get|refund)|believable|investigat\w*|flag\w*|(?:don'?t|won'?t)"
            r" check)"
            r"|\b(?:arrived|delivered) (?:fine|ok|safely|just fine)\b[^\n]{0,60}?\b(?:report|say|claim)"
            r"\b[^\n]{0,30}?\b(?:missing|lost|not received|never arrived)"
            r"|\bhow many times can i (?:say|claim|report)|\bmaximum number of times\b[^\n]{0,40}?"
            r"(?:not received|never arrived|missing)"
            r"|\b(?:stolen|missing|lost|never arrived)\b[^\n]{0,60}?\beven though (?:she|he|i|they|we)"
            r" (?:has|have|had|got|received)\b"
            r"|\b(?:sagen|behaupten),? dass (?:es|das paket) nie (?:geliefert|angekommen)"
            r"|\bdire qu'il n'(?:est|a) jamais (?:arrive|ete livre)|\bdecir que nunca (?:llego|me llego)",
        ),
        (
            "bought-elsewhere",
            r"\b(?:bought|purchased|got)\b[^\n]{0,60}?\b(?:at|from|in) (?:another|a different"
            r"|other|some other|a thrift|a second-?hand|a charity|an outlet|amazon|ebay|a market)"
            r"\b[^\n]{0,80}?\b(?:return|refund|send (?:it )?back)\b",
        ),
        (
            "no-check",
            r"\b(?:so|where|what|how)\b[^\n]{0,60}?\b(?:nobody|no one|the warehouse|they|you) (?:checks?"
            r"|won'?t check|doesn'?t check|don'?t check|notices?|inspects?)\b[^\n]{0,40}?(?:used"
            r"|worn|the item|it was|inside)|\bdoes the warehouse (?:actually )?check\b",
        ),
        (
            "weight-trick",
            r"\b(?:weighs?|weight) the same\b|\b(?:put|add|stuff)\b[^\n]{0,30}?\b(?:rocks|bricks"
            r"|stones|sand|weights?)\b",
        ),
    ),
    "dangerous": (
        (
            "violent-intent",
            r"\b(?:want|plan(?:ning)?|how|decided|need) to (?:kill|hurt|poison|beat up"
            r"|stab|shoot|attack|burn|kidnap|run over) (?:someone|somebody|him|her|them"
            r"|people|my|the|a|this|that|those)\b(?! (?:order|package|parcel|account|subscription"
            r"|search|bug|process|app|time|price|deal)\b)",
        ),
        (
            "weapons",
            r"\b(?:make|build|assemble|create|convert|turn|modify|manufacture|3d[- ]print|craft"
            r"|improvise|fashion)\b[^\n]{0,60}?\b(?:bombs?|pipe ?bombs?|explosives?|silencers?"
            r"|suppressors?|grenades?|molotovs?|napalm|detonators?|real (?:bullets|rounds|ammo)"
            r"|fully automatic|full[- ]auto|untraceable (?:gun|weapon)|ghost guns?|zip guns?"
            r"|shiv|weapons?)\b|\b(?:bomba|bombe|sprengsatz|explosivo|explosif)\b",
        ),
        (
            "hurt-someone",
            r"\b(?:poison|hurt|harm|injure|kill|attack|stab|choke|drug|incapacitate|knock out)"
            r" (?:someone|somebody|a person|people|him|her|them|my (?:\w+ )?(?:ex|wife|husband|boss"
            r"|neighbou?r|girlfriend|boyfriend|teacher|coworker|brother|sister|roommate))\b"
            r"|\b(?:make|get) (?:someone|a person|him|her|them|my \w+) (?:seriously |really )?"
            r"(?:sick|ill)\b|\bwithout it being obvious\b|\b(?:most damage|do damage|hurt the most)"
            r"\b[^\n]{0,40}?\b(?:fight|person|someone|people)|\buse it on (?:a person|someone"
            r"|people|him|her)\b|\bcan'?t fight back\b|\blethal dose\b[^\n]{0,40}?\b(?:person"
            r"|someone|him|her)|\bpay (?:them|him|her) a visit\b",
        ),
        (
            "break-in",
            r"\b(?:hack|break into|get into|access|log ?into|crack|take over|spy on|read)\b"
            r"(?: into)?[^.!?\n]{0,10}?\b" + _OTHERS + r" (?:\w+ )?(?:account|email|password"
            r"|phone|messages|inbox|profile|orders)\b"
            r"|\b(?:how|way) to (?:get|break) into (?:someone|somebody|other people)'?s?\b",
        ),
        (
            "find-a-person",
            r"\b(?:home |shipping |delivery |street )?address\b[^\n]{0,40}?\b(?:of (?:the person"
            r"|someone|my ex|her|him|the (?:customer|reviewer|guy|woman|man))|on (?:her|his|their)"
            r" (?:latest |last )?orders?)\b|\bgive me (?:her|his|their) (?:home |shipping )?"
            r"(?:address|phone(?: number)?|location)\b|\bwhere (?:she|he|they) lives?\b"
            r"|\b(?:hide|put|plant|stick)\b[^\n]{0,40}?\b(?:in|on|under) (?:someone|somebody|her"
            r"|his|their|my (?:\w+ )?(?:ex|wife|husband|girlfriend|boyfriend))'?s?\b"
            r"|\b(?:track|follow|monitor|stalk)\b[^\n]{0,20}?\b(?:someone|somebody|her|him|my"
            r" (?:ex|wife|husband|girlfriend|boyfriend))\b[^\n]{0,40}?(?:without|secretly|knowing)",
        ),
        (
            "mix-to-harm",
            r"\b(?:mix|combine|make)\b[^.!?\n]{0,60}?\b(?:explodes?|explosion|explosive|toxic (?:gas"
            r"|fumes|smoke)|poison(?:ous)? gas|chlorine gas|mustard gas)\b"
            r"|\buse it on (?:my|the|a|his|her|their) (?:\w+ )?(?:neighbou?r'?s? )?(?:dog|cat|pet|kid"
            r"|child|son|daughter|neighbou?r)\b|\b(?:burn down|set fire to|torch) (?:a|the|his|her"
            r"|their|my \w+'?s?) (?:house|home|car|shop|store|building)\b|\barson\b"
            r"|\bwhich (?:houses|homes) to (?:hit|rob|break into)|\b(?:rob|burgle|burglari[sz]e|break"
            r" into) (?:houses|homes|their (?:house|home)|the house)\b",
        ),
        (
            "cyber-attack",
            r"\b(?:ddos|dos attack|malware|ransomware|keylogger|botnet|credential stuffing|sql"
            r" injection)\b[^.!?\n]{0,60}?\b(?:make|build|write|explain|create|run|launch|take|so i"
            r" can)\b|\b(?:make|build|write|explain|create)\b[^.!?\n]{0,30}?\b(?:ddos|malware"
            r"|ransomware|keylogger|botnet)\b|\btake (?:your|the|their) (?:checkout|site|website"
            r"|server|shop) down\b",
        ),
        (
            "threat",
            r"\b(?:dar(?:le)? una leccion|darle su merecido|lui donner une lecon|lui regler son compte"
            r"|ihm eine lektion erteilen|teach (?:him|her|them) a lesson|make (?:him|her|them) pay"
            r"|pay (?:him|her|them) a visit)\b"
            r"|\b(?:konto|account)\b[^.!?\n]{0,40}?\bhacken\b|\bhackear (?:la )?cuenta\b"
            r"|\bpirater (?:le |son |sa )?compte\b",
        ),
        (
            "drugs",
            r"\b(?:grow|cook|make|extract|synthesi[sz]e|dry|produce|brew)\b[^\n]{0,40}?\b(?:magic"
            r" mushrooms|psilocybin|meth|methamphetamine|cocaine|crack|heroin|lsd|dmt|mdma|ecstasy"
            r"|fentanyl|drugs|ghb)\b",
        ),
        (
            "concealed-weapon",
            r"\b(?:hide|conceal|sneak|smuggle)\b[^\n]{0,60}?\b(?:knife|knives|blade|gun|weapon"
            r"|spray)\b[^\n]{0,60}?\b(?:concert|airport|plane|school|security|stadium|court)"
            r"|\bwithout security finding\b",
        ),
    ),
    "self_harm": (
        (
            "self-harm-broad",
            r"\b(?:end it|end it all|not be here (?:tomorrow|anymore|much longer)|goodbye forever"
            r"|nobody (?:would|will) miss me|can'?t go on|better off without me|better off dead"
            r"|wish i (?:was|were) dead|want to be dead)\b|\b(?:how (?:much|many|long)|enough)\b"
            r"[^\n]{0,80}?\b(?:to die|die from|dead|kill (?:me|myself|a person))\b",
        ),
        (
            "self-harm",
            r"\b(?:kill|hurt|harm|cut|poison|end) (?:myself|my life)\b|\bsuicid\w*"
            r"|\b(?:want|going|plan(?:ning)?|decided|ready) to (?:die|end it(?: all)?|end my life"
            r"|disappear forever)\b|\bpainless (?:way|death|method)\b|\bdisappear forever\b"
            r"|\b(?:don'?t|do not) want to (?:live|be alive|wake up|be here anymore)\b"
            r"|\bwon'?t be (?:around|alive|here) (?:to|anymore|much longer)\b|\btake my (?:own )?"
            r"life\b|\boverdose\b|\b(?:how much|how many|what amount)\b[^\n]{0,60}?\b(?:to die"
            r"|kill me|be fatal|be lethal)\b|\bno reason to (?:live|go on)\b"
            r"|\bme (?:suicider|tuer)\b|\bmettre fin a (?:mes jours|ma vie)\b|\bmich umbringen\b"
            r"|\bselbstmord\b|\bmir das leben nehmen\b|\bmatarme\b|\bquitarme la vida\b"
            r"|\bsuicidarme\b|\bno quiero vivir\b|\bich will nicht mehr leben\b"
            r"|\bje ne veux plus vivre\b|\b(?:not|never) (?:to )?wake up\b|\bi'?m done with"
            r" (?:everything|life|it all)\b|\b(?:hold|support) a person'?s weight\b"
            r"|\bcutting myself\b|\ben finir\b|\bacabar con (?:todo|mi vida)\b"
            r"|\bwill nicht mehr (?:leben|sein)\b|\b(?:high|forte|hohe[rn]?|alta) dos(?:e|is)\b",
        ),
    ),
    "illegal": (
        (
            "customs-lie",
            r"\b(?:write|put|declare|mark|label|list|say)\b[^\n]{0,40}?\b(?:gift|lower value|a lower"
            r" value|\$ ?\d+|used clothing|samples?|t-shirts|clothes|camisetas|documents)\b"
            r"[^\n]{0,60}?\b(?:customs|duties|duty|tax|aduana|douane|zoll)\b[^\n]{0,60}?(?:don'?t"
            r" pay|avoid|not pay|no pagar|ne pas payer|keine)|\b(?:customs|duties|aduana|douane"
            r"|zoll)\b[^\n]{0,60}?\b(?:so i don'?t pay|avoid (?:paying|the)|lie|fake|under-?declare"
            r"|false)|\bponiendo solo\b",
        ),
        (
            "smuggling",
            r"\b(?:hide|hidden|conceal\w*|smuggl\w*|escondid\w*|cach(?:er|e|es)|versteck\w*)\b"
            r"[^\n]{0,60}?\b(?:in|among|between|inside|entre|dans|unter|zwischen)\b[^\n]{0,40}?"
            r"\b(?:clothes|clothing|parcel|package|box|shipment|ropa|vetements|kleidung|paquete"
            r"|colis|paket)\b",
        ),
        (
            "laundering",
            r"\b(?:launder\w*|money laundering|make (?:it|the (?:cash|money)|my money) (?:look )?"
            r"clean|avoid (?:the )?reporting (?:limits|requirements|thresholds)|structur\w* (?:cash"
            r"|deposits|payments)|blanquear|blanchir|waschen)\b",
        ),
        (
            "stolen-goods",
            r"\b(?:resell|sell|fence|move|get rid of)\b[^\n]{0,40}?\b(?:stolen|nicked|knocked-off)"
            r" (?:goods|items|stuff|merchandise|products|jackets|gear)\b|\bfell off (?:a|the back of"
            r" a|the) (?:truck|lorry)\b|\b(?:were|was) stolen from (?:a|the) (?:store|shop"
            r"|warehouse|truck)\b[^\n]{0,60}?\b(?:sell|resell|return)",
        ),
        (
            "mislabel",
            r"\b(?:call|label|describe|mark|declare|list) (?:it|them|the \w+)(?: as)? ['\"]?\w+['\"]? on"
            r" the (?:customs )?(?:form|declaration)\b|\b(?:niedrigeren|geringeren|falschen)"
            r" (?:waren)?wert\b|\b(?:valeur|valor) (?:plus )?(?:basse|bajo|inferior|menor)\b"
            r"|\bsous-declarer\b|\bdeclarar (?:menos|un valor)\b",
        ),
        (
            "structuring",
            r"\bsplit\b[^\n]{0,60}?\b(?:payments?|cash|money|purchases?)\b[^\n]{0,80}?\b(?:so|to"
            r" avoid|without)\b[^\n]{0,40}?\b(?:report|notice|flag|limit)",
        ),
        (
            "prohibited-shipping",
            r"\b(?:ship|send|mail|post)\b[^\n]{0,40}?\b(?:drugs|weapons|guns|ammunition|ammo"
            r"|explosives|fireworks)\b[^\n]{0,60}?\b(?:without|hidden|disguised|so (?:customs"
            r"|nobody))",
        ),
    ),
}


class HarmReplies(Strict):
    """What each category's customer is told instead of an answer."""

    fraud: str = (
        "I can't help with that. If something went wrong with an order or a payment, "
        "I'm glad to help you sort it out the right way — or I can connect you with a person."
    )
    returns_abuse: str = (
        "I can't help with that. Our returns policy explains what can be returned and how; "
        "would you like me to go through it, or talk to a person?"
    )
    dangerous: str = (
        "I can't help with that. If someone is in danger, please call your local emergency number."
    )
    self_harm: str = (
        "I'm really sorry you're feeling this way. You don't have to face it alone: please "
        "reach out to someone you trust, or a crisis line now (in the US call or text 988; "
        "in the UK and Ireland call Samaritans on 116 123; elsewhere, your local emergency "
        "number). Would you like me to connect you with a person from our team?"
    )
    illegal: str = "I can't help with that. Would you like to talk to a person about your order?"
    # A request the meaning classifier flagged, with no named rule to say which kind.
    other: str = "I can't help with that here. Would you like to talk to a person?"


class HarmRules(Strict):
    """The `harm` section: requests for help to do harm, declined with a policy reply."""

    enabled: bool = True
    # The built-in categories to apply (any of fraud, returns_abuse, dangerous, self_harm,
    # illegal).
    categories: list[Category] = Field(default_factory=lambda: list(CATEGORIES))
    # Your own regular expressions per category (case-blind); a match declines.
    patterns: dict[Category, list[UserPattern]] = Field(default_factory=dict)
    replies: HarmReplies = Field(default_factory=HarmReplies)
    # Also judge what a message means, in any language (policies/semantic.py): declined at
    # or above the trained "block" threshold, or at or above "ask" when the message asks for
    # help and does not tell of the customer as a victim. False: the named rules alone.
    meaning: bool = True


class HarmStage:
    """Declines requests for help to do harm (see the module docstring)."""

    name = "harm"

    def __init__(self, rules: HarmRules) -> None:
        self._rules = rules
        self._meaning: LinearJudge | None = None
        wanted = set(rules.categories)
        self._compiled = [
            (category, name, re.compile(pattern))
            for category in CATEGORIES
            if category in wanted
            for name, pattern in RULES[category]
        ] + [
            (category, f"pattern:{i}", re.compile(pattern, re.IGNORECASE))
            for category, patterns in rules.patterns.items()
            for i, pattern in enumerate(patterns)
        ]

    def warm_up(self) -> None:
        if self._rules.enabled and self._rules.meaning and self._meaning is None:
            judge = LinearJudge.load("harm_meaning")
            judge.warm_up()
            self._meaning = judge

    def meant(self, text: str) -> Finding | None:
        """A finding when the meaning classifier declines `text` (see `HarmRules.meaning`)."""
        if self._meaning is None:
            return None
        try:
            probability = self._meaning.probability(text)
        except Exception:  # the named rules still judge
            return Finding(self.name, "meaning", "error")
        normal = normalise(text)
        if _VICTIM.search(normal) or len(normal.split()) < 5:  # short texts: read poorly
            return None
        limits = self._meaning.thresholds
        if probability >= limits["block"] or (
            probability >= limits["ask"] and _ASKS.search(normal)
        ):
            return Finding(self.name, "meaning", "block", score=round(probability, 4))
        return None

    def matches(self, text: str) -> list[tuple[Category, str]]:
        """(category, rule) for every rule that matches `text`."""
        normal = normalise(text)
        return [(c, name) for c, name, pattern in self._compiled if pattern.search(normal)]

    def check(self, text: str, context: Context) -> Verdict:
        if not self._rules.enabled or not text.strip():
            return Allow(text)
        found = self.matches(text)
        if not found:
            meant = self.meant(text)
            if meant is None or meant.action == "error":
                return Allow(text, findings=(meant,) if meant is not None else ())
            return Block("harmful request (meaning)", self._rules.replies.other, (meant,))
        # Self-harm first: that customer needs the caring reply whatever else they wrote.
        order = {c: i for i, c in enumerate(("self_harm", "dangerous", "illegal", "fraud"))}
        category = min((c for c, _ in found), key=lambda c: order.get(c, 9))
        findings = tuple(Finding(self.name, f"{c}:{rule}", "block") for c, rule in found)
        reply = getattr(self._rules.replies, category)
        handoff = "the customer may be at risk" if category == "self_harm" else ""
        return Block(f"harmful request ({category})", reply, findings, handoff)


# --- claims --------------------------------------------------------------------------------

_DONE = (
    r"(?:changed|updated|cancell?ed|refunded|issued|processed|sent|resent|shipped|dispatched"
    r"|reset|deleted|removed|closed|credited|applied|added|upgraded|downgraded|booked|arranged"
    r"|redirected|rerouted|extended|approved|reversed|waived|unlocked|reactivated|restored"
    r"|replaced|modified|corrected|fixed|moved|rescheduled|submitted|placed|ordered|created"
    r"|generated|emailed|transferred|initiated|started|opened|escalated|switched|swapped"
    r"|re-?shipped|marked|confirmed|activated|deactivated|paused|released|exchanged)"
)
_CLAIM = re.compile(
    # "I've changed...", "I have gone ahead and cancelled...", "we've refunded..."
    r"\b(?:i|we|i've|we've|i have|we have|i just|we just|i've just|we've just|i have just|we"
    r" have just|i've now|we've now|i already|we already|i went ahead and|i've gone ahead and"
    r"|i've also|we've also|i've successfully|i've personally|i personally"
    r"|i have gone ahead and|we've gone ahead and|i'll go ahead and|done! i've)\s+(?:also |now "
    r"|successfully |already |just )?" + _DONE + r"\b"
    # "Your order has been cancelled.", "Your email is now updated", "Done: refund issued."
    r"|\byour (?:[\w-]+ ){0,3}?(?:has|have) (?:now |just |already |successfully )?been "
    + _DONE
    + r"\b(?! (?:within|after|once|when|if|automatically|by (?:the|our|your)|in (?:\d|one|two)))"
    r"|\byour (?:\w+ ){0,3}?(?:is|are) now (?:\w+ )?(?:" + _DONE + r"|deleted|cancell?ed|active"
    r"|inactive)\b"
    r"|\b(?:a |the |your )?(?:refund|replacement|credit|discount|label|new password|reset link)"
    r"(?: of [^\s]+)? (?:is now|has (?:now |just )?been|was just) (?:on (?:its|the) way|issued|sent"
    r"|applied|processed|approved)\b(?! (?:within|after|once|when|if|automatically))",
    re.IGNORECASE,
)
# Sentences that are not a claim although they use the words: conditions, instructions,
# policies, offers, what a person will do, and the handoff itself.
_NOT_CLAIM = re.compile(
    r"\b(?:if|once|when|after|until|unless|before|as soon as|whenever|by the time|as long as"
    r"|while)\b[^.!?]{0,60}$|^\s*(?:if|once|when|after|until|unless|before|as soon as|whenever)\b|\b(?:can|could|will be|would|may|might|should|must|need to"
    r"|you can|you'll|to have|cannot|can't|couldn't|won't|isn't|aren't|hasn't|haven't|not)\b"
    r"|\basked a person\b|\bfound\b|\bi've (?:asked|passed|forwarded|noted|let)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")


class ClaimsRules(Strict):
    """The `claims` section: answers that say the bot did something it cannot do."""

    enabled: bool = True
    # What replaces a sentence that claims an action no action took.
    reply: str = (
        "I can't make that change myself, but a person from our team can — would you like "
        "me to connect you?"
    )


class ClaimsStage:
    """Rewrites answer sentences that claim an action (see the module docstring)."""

    name = "claims"

    def __init__(self, rules: ClaimsRules) -> None:
        self._rules = rules

    def warm_up(self) -> None:
        return None

    def claims(self, text: str) -> bool:
        """Whether `text` has a sentence that claims an action was taken."""
        return any(_is_claim(m.group()) for m in _SENTENCE.finditer(text))

    def check(self, text: str, context: Context) -> Verdict:
        if not self._rules.enabled or context.acted or context.quoted or not text.strip():
            return Allow(text)
        out, rewrote, said = [], 0, False
        for match in _SENTENCE.finditer(text):
            sentence = match.group()
            if _is_claim(sentence):
                rewrote += 1
                if not said:  # one offer of a person for several claims
                    lead = sentence[: len(sentence) - len(sentence.lstrip())]
                    out.append(lead + self._rules.reply + (" " if sentence.endswith(" ") else ""))
                    said = True
            else:
                out.append(sentence)
        if not rewrote:
            return Allow(text)
        return Allow(
            "".join(out), findings=(Finding(self.name, "action-claim", "rewrite", count=rewrote),)
        )


def _is_claim(sentence: str) -> bool:
    found = _CLAIM.search(sentence)
    if found is None:
        return False
    head = sentence[: found.start()]
    return not _NOT_CLAIM.search(head) and not re.search(
        r"\b(?:can't|cannot|couldn't|won't|not|unable)\b", sentence, re.IGNORECASE
    )
