"""The injection stage's rules in other languages: French, German, Spanish, Italian,
Portuguese and Dutch (the widget speaks the first three; attackers write in any of them).

Judged in the customer's own words, not through a translation: each rule is a technique (set
aside the previous instructions, show the hidden prompt, a persona without rules, a fake
system header, a new job for the bot) with its words in every language. The text they read is
`policies.injection.normalise`'d: lower case, accents taken off ("règles" is "regles",
"Einschränkungen" "einschrankungen"), so a message typed without accents matches too.

A customer's own instructions and rules stay theirs: "j'ai oublié mes instructions de
retour", "ich habe die Anweisungen zur Rücksendung nicht verstanden" and "¿cuáles son sus
reglas de devolución?" match nothing: setting instructions aside needs *yours, all, the
previous, the system's*, and asking to see "your instructions" about a subject ("tus
instrucciones para la devolución") is a question, not extraction.
"""

# ruff: noqa: E501  (regular expressions read best whole, a rule a line)

from __future__ import annotations

import re

from policies.base import POINTS, Point

ALL_POINTS: frozenset[Point] = frozenset(POINTS)
NOT_RETRIEVAL: frozenset[Point] = ALL_POINTS - {"retrieval"}


def _any(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


# Set aside: ignore, forget, disregard, put aside, bypass, disobey.
_SET_ASIDE = _any(
    # fr
    r"ignor(?:e|es|ez|er)\b",
    r"oubli(?:e|es|ez|er)\b",
    r"fai(?:s|tes) abstraction",
    r"mett(?:s|ez|re) de cote",
    r"ne tien(?:s|nent) plus compte",
    r"ne tenez plus compte",
    r"passe(?:z|r)? outre",
    r"contourne(?:z|r)?\b",
    r"desobei(?:s|ssez|r)\b",
    # de
    r"ignorier(?:e|en|t|st)?\b",
    r"vergiss\b",
    r"vergessen sie\b",
    r"missachte(?:n|t)?\b",
    r"ubergehe?\b",
    r"ueberg(?:eh|ehe)\b",
    r"setz(?:e|en sie)? (?:\w+ ){0,3}ausser kraft",
    # es
    r"ignora(?:r)?\b",
    r"ignore(?:n)?\b",
    r"olvida(?:te|r)?\b",
    r"olvide(?:n)?\b",
    r"haz caso omiso",
    r"haga caso omiso",
    r"omit(?:e|a|ir)\b",
    r"salta(?:te)?\b",
    r"desobedec\w*",
    r"pasa por alto",
    r"deja de lado",
    # it
    r"dimentica(?:re)?\b",
    r"trascura(?:re)?\b",
    r"tralascia(?:re)?\b",
    r"non tenere conto",
    r"metti da parte",
    # pt
    r"esquec(?:a|e|er)\b",
    r"desconsider(?:e|a|ar)\b",
    r"deixe de lado",
    # nl
    r"negeer\b",
    r"vergeet\b",
    r"negeren\b",
)
# What is set aside: the bot's instructions, rules, restrictions, policy.
_RULES = _any(
    r"instructions?",
    r"consignes?",
    r"regles?",
    r"directives?",
    r"prompt",
    r"programmation",
    r"restrictions?",
    r"limites",
    r"filtres?",
    r"politiques?",
    r"anweisung(?:en)?",
    r"regeln",
    r"vorgaben",
    r"richtlinien",
    r"instruktionen",
    r"befehle",
    r"einschrankungen",
    r"beschrankungen",
    r"systemprompt",
    r"anordnungen",
    r"programmierung",
    r"instrucciones",
    r"reglas",
    r"normas",
    r"directrices",
    r"indicaciones",
    r"restricciones",
    r"programacion",
    r"politicas?",
    r"filtros",
    r"istruzioni",
    r"regole",
    r"direttive",
    r"restrizioni",
    r"programmazione",
    r"filtri",
    r"politiche",
    r"instrucoes",
    r"regras",
    r"diretrizes",
    r"orientacoes",
    r"restricoes",
    r"programacao",
    r"instructies",
    r"regels",
    r"richtlijnen",
    r"aanwijzingen",
    r"beperkingen",
)
# Whose or which: yours, all, the previous, the system's (never the customer's own).
_QUALIFIER = _any(
    r"precedentes?",
    r"anterieures?",
    r"toutes",
    r"tous",
    r"tes",
    r"vos",
    r"ta",
    r"votre",
    r"ci-dessus",
    r"d'avant",
    r"initiales",
    r"d'origine",
    r"(?:du )?systeme",
    r"alle[ns]?",
    r"vorherigen",
    r"bisherigen",
    r"obigen",
    r"vorigen",
    r"fruheren",
    r"ursprunglichen",
    r"deine[ns]?",
    r"ihre[ns]?",
    r"anteriores",
    r"previas",
    r"todas",
    r"tus",
    r"sus",
    r"tu",
    r"su",
    r"de arriba",
    r"del sistema",
    r"originales",
    r"iniciales",
    r"precedenti",
    r"tutte",
    r"tue",
    r"sue",
    r"tua",
    r"di sistema",
    r"originali",
    r"iniziali",
    r"suas",
    r"tuas",
    r"sua",
    r"do sistema",
    r"originais",
    r"iniciais",
    r"vorige",
    r"eerdere",
    r"bovenstaande",
    r"je",
    r"jouw",
    r"uw",
    r"oorspronkelijke",
    r"(?:von|de|del|of|di|van|da|do) (?:northwind|(?:the |der |la |el |de |do |da )?(?:company|shop"
    r"|store|firma|empresa|entreprise|azienda|bedrijf|system|systeme|sistema|entwickler"
    r"|developers?))",
)
_SPAN = r"[^.!?\n]{0,40}?"

# Forget everything you were told.
_FORGET_ALL = _any(
    r"oubli(?:e|ez) tout ce (?:qu'on|que l'on|qui)",
    r"(?:vergiss|vergessen sie) alles,? (?:was|bisher|davor|vorher)",
    r"olvid(?:a|e|en) todo lo (?:que|anterior)",
    r"dimentica tutto (?:cio|quello|quanto)",
    r"esque(?:ca|ce) tudo (?:o )?que",
    r"vergeet alles (?:wat|hierboven|daarvoor)",
)

# Show, tell, give, copy, translate, read out: the verbs of extraction.
_REVEAL = _any(
    r"montre[rz]?",
    r"affiche[rz]?",
    r"revele[rz]?",
    r"donne[rz]?(?:-moi)?",
    r"dis(?:-moi)?",
    r"dites(?:-moi)?",
    r"ecri(?:s|vez|re)",
    r"repete[rz]?",
    r"copie[rz]?",
    r"tradui(?:s|sez|re)",
    r"recite[rz]?",
    r"imprime[rz]?",
    r"colle[rz]?",
    r"cite[rz]?",
    r"partage[rz]?",
    r"li(?:s|sez|re)",
    r"zeig(?:e|en|t)?",
    r"gib",
    r"geben sie",
    r"verrat(?:e|en)?",
    r"nenn(?:e|en)?",
    r"schreib(?:e|en)?",
    r"wiederhol(?:e|en)?",
    r"kopier(?:e|en)?",
    r"ubersetz(?:e|en)?",
    r"zitier(?:e|en)?",
    r"offenleg\w*",
    r"offenzulegen",
    r"vorles\w*",
    r"lies",
    r"fug(?:e|en sie) \w+ ein",
    r"muestra(?:me|r)?",
    r"muestreme",
    r"revela(?:me|r)?",
    r"dime",
    r"digame",
    r"escrib(?:e|a|ir)",
    r"repit(?:e|a)",
    r"repetir",
    r"copi(?:a|e|ar)(?:lo|la|los)?",
    r"traduc(?:e|ir)",
    r"traduzca",
    r"imprim(?:e|a|ir)",
    r"compart(?:e|a|ir)",
    r"pega(?:r)?",
    r"le(?:e|a|er)(?:me|mela|melo|lo)?",
    r"mostra(?:mi|re)?",
    r"rivela(?:mi|re)?",
    r"dimmi",
    r"scrivi",
    r"ripeti",
    r"traduci",
    r"stampa",
    r"condividi",
    r"incolla",
    r"leggi(?:mi)?",
    r"leggere",
    r"riporta(?:re)?",
    r"mostr(?:e|ar)",
    r"exib(?:a|e|ir)",
    r"revel(?:e|ar)",
    r"diga",
    r"escreva",
    r"repita",
    r"traduza",
    r"imprima",
    r"compartilh(?:e|ar)",
    r"lei?a",
    r"ler",
    r"toon",
    r"tonen",
    r"geef",
    r"vertel",
    r"schrijf",
    r"herhaal",
    r"kopieer",
    r"vertaal",
    r"deel",
    r"plak",
    r"voorlezen",
    r"lees",
    r"laat (?:me |mij )?\w+ (?:\w+ )?zien",
    r"resume[rz]?",
    r"resumir",
    r"communique[rz]?",
    r"transmet(?:s|tez|tre)",
    r"fourni(?:s|r|ssez)",
    r"envoie[rz]?",
    r"mitteilen",
    r"teilen sie",
    r"traduz",
    r"delen",
    r"fass\w*",
    r"riassumi",
    r"resuma",
    r"vat",
)
# The hidden prompt by its names: these alone are a signal (MEDIUM).
_HIDDEN_PROMPT = _any(
    r"prompt (?:du |de )?systeme",
    r"prompt(?:-| )?systeme",
    r"prompt (?:secret|initial|cache)",
    r"(?:ton|votre) prompt",
    r"instructions (?:du |de )?systeme",
    r"instructions (?:initiales|cachees|secretes|internes)",
    r"message cache",
    r"system-?prompts?",
    r"systemanweisungen",
    r"system-?instruktionen",
    r"(?:deinen|ihren|den) prompt",
    r"(?:versteckten?|geheimen?|internen?) (?:anweisungen|regeln|nachricht|prompt)",
    r"prompt (?:del|de) sistema",
    r"instrucciones (?:del|de) sistema",
    r"instrucciones (?:ocultas|secretas|internas|iniciales)",
    r"(?:tu|su) prompt",
    r"prompt (?:secreto|inicial|oculto)",
    r"mensaje oculto",
    r"prompt (?:di|del) sistema",
    r"istruzioni (?:di|del) sistema",
    r"istruzioni (?:nascoste|segrete|interne|iniziali)",
    r"(?:il )?tuo prompt",
    r"prompt do sistema",
    r"instrucoes do sistema",
    r"instrucoes (?:ocultas|secretas|internas|iniciais)",
    r"(?:seu|teu) prompt",
    r"systeemprompt",
    r"systeem ?prompt",
    r"systeeminstructies",
    r"(?:interne|verborgen|geheime) instructies",
    r"(?:je|jouw|uw) prompt",
    # the bot's instructions, in every language (English too)
    r"(?:anweisungen|regeln|instructions|consignes|regles|instrucciones|reglas|istruzioni"
    r"|regole|instrucoes|regras|instructies|regels|rules|guidelines|prompt) (?:des bots|des"
    r" assistenten|du bot|de l'assistant|del bot|del asistente|dell'assistente|do bot|do"
    r" assistente|van de bot|van de assistent|of the (?:bot|assistant|chatbot|ai))",
    r"(?:the )?(?:bot|assistant|chatbot|ai)'s (?:instructions|rules|prompt|guidelines)",
    r"(?:ta|votre|deine|ihre|tu|su|la tua|la sua|sua|tua|je|jouw|uw) (?:\w+ )?(?:configuration"
    r"|konfiguration|configuracion|configurazione|configuracao|configuratie)",
)
# "Your", said to the bot, and its instructions or rules, in every language.
_YOUR = _any(
    r"your",
    r"tes",
    r"vos",
    r"deine",
    r"ihre",
    r"tus",
    r"sus",
    r"(?:le )?tue",
    r"(?:le )?sue",
    r"suas",
    r"tuas",
    r"je",
    r"jouw",
    r"uw",
)
_INSTRUCTIONS = _any(
    r"instructions",
    r"consignes",
    r"regles",
    r"anweisungen",
    r"regeln",
    r"vorgaben",
    r"instrucciones",
    r"reglas",
    r"istruzioni",
    r"regole",
    r"instrucoes",
    r"regras",
    r"instructies",
    r"regels",
)
# Yours, about no subject ("your instructions", not "your instructions for returns").
_YOUR_RULES = (
    _YOUR
    + r" (?:\w+ )?"
    + _INSTRUCTIONS
    + r"\b(?! (?:pour|sur|de|du|des|concernant|zur|zum|zu|fur|uber|bei|para|sobre|de|del|per|sul|sulla|su|do|da|voor|over|om|bij)\b)"
)
# The instructions the bot was given.
_GIVEN = _any(
    r"(?:instructions|consignes|regles),? qu(?:'on|e l'on) (?:t|vous)'?a (?:donne|fourni)\w*",
    r"(?:instructions|consignes|regles),? que (?:tu as|vous avez) recu\w*",
    r"(?:anweisungen|regeln|vorgaben),? die (?:man dir|man ihnen|du|sie) (?:\w+ )?(?:gegeben|bekommen|erhalten)",
    r"(?:instrucciones|reglas),? que (?:te|le) (?:dieron|han dado|dio|dan)",
    r"(?:istruzioni|regole),? che ti (?:hanno dato|sono state date|danno)",
    r"(?:instrucoes|regras),? que (?:te|lhe) (?:deram|foram dadas|dao)",
    r"(?:instructies|regels),? die (?:je|u) (?:\w+ )?(?:hebt|heeft|kreeg|kreeg je)? ?(?:gekregen|meegekregen)",
)
# Before the first message (where the hidden setup sits).
_FIRST_MESSAGE = _any(
    r"(?:avant|au-dessus d)u? (?:le |ton |mon |votre )?premier message",
    r"(?:uber|vor) (?:der|meiner|deiner) ersten nachricht",
    r"antes del? (?:mi |tu |su )?primer mensaje",
    r"prima del (?:mio |tuo )?primo messaggio",
    r"antes da (?:minha |sua )?primeira mensagem",
    r"(?:voor|boven) (?:het|mijn) eerste bericht",
    r"acima da (?:minha |sua )?primeira mensagem",
)
_VERBATIM = _any(
    r"mot pour mot",
    r"textuellement",
    r"tel quel",
    r"telle quelle",
    r"en entier",
    r"l'integralite",
    r"integralite",
    r"integralement",
    r"wort ?(?:fur|fuer) ?wort",
    r"wortwortlich",
    r"wortlich",
    r"im (?:genauen )?wortlaut",
    r"genauen wortlaut",
    r"vollstandig\w*",
    r"tal cual",
    r"palabra por palabra",
    r"literalmente",
    r"texto completo",
    r"parola per parola",
    r"testualmente",
    r"integralmente",
    r"palavra por palavra",
    r"na integra",
    r"woord voor woord",
    r"letterlijk",
)
# A persona without rules, filters or refusals.
_UNFILTERED = _any(
    r"sans (?:aucun(?:e)? |plus de |les )?(?:filtres?|restrictions?|regles?|limites?|censure)",
    r"n'a (?:plus )?aucune (?:regle|restriction|limite|limite)",
    r"(?:qui )?ne refuse jamais",
    r"ohne (?:jegliche |irgendwelche |alle )?(?:regeln|filter|einschrankungen|beschrankungen|zensur|grenzen)",
    r"verweigert (?:nie|niemals)",
    r"unzensiert\w*",
    r"ungefiltert\w*",
    r"n'(?:aies|ayez|avais|aviez|aurais|auriez) (?:plus )?aucune (?:restriction|regle|limite)",
    r"sin (?:ningun[ao]? )?(?:filtros?|restricciones?|reglas|limites|censura)",
    r"no tuvieras (?:ninguna )?(?:restriccion|regla|limite)\w*",
    r"nunca se niega",
    r"senza (?:alcun[ao]? |nessun[ao]? )?(?:filtri|restrizioni|regole|limiti|censura)",
    r"non rifiuta mai",
    r"sem (?:nenhum[a]? )?(?:filtros?|restricoes|regras|limites|censura)",
    r"nunca recusa",
    r"zonder (?:enige )?(?:filters?|beperkingen|regels|censuur|grenzen)",
    r"weigert (?:nooit|nimmer)",
    r"ongefilterd\w*",
    r"ongecensureerd\w*",
)
# You are now someone else; let's play; pretend.
_PERSONA = _any(
    r"tu es (?:maintenant|desormais|a present)",
    r"vous etes (?:maintenant|desormais|a present)",
    r"(?:a partir de maintenant|desormais|dorenavant),? (?:tu|vous) (?:es|etes|vas|allez|reponds|repondez)",
    r"tu vas (?:maintenant )?jouer",
    r"joue(?:z)? (?:le role|un role)",
    r"fai(?:s|tes) semblant",
    r"on fait un jeu",
    r"incarne(?:z)?\b",
    r"du bist (?:jetzt|nun|ab sofort|ab jetzt|von nun an)",
    r"sie sind (?:jetzt|nun|ab sofort)",
    r"ab (?:jetzt|sofort) (?:bist du|sind sie|antwortest|beantworten sie|antworte)",
    r"von nun an (?:bist du|sind sie|antwortest|antworte)",
    r"tu so,? als",
    r"spiel(?:e)? (?:die rolle|einen|eine)",
    r"ahora eres",
    r"(?:desde|a partir de) ahora,? (?:eres|usted|tu|responde|respondes|contesta)",
    r"fing(?:e|a) (?:ser|que)",
    r"actua como",
    r"haz de cuenta",
    r"juguemos",
    r"(?:da )?(?:adesso|ora) sei",
    r"d'ora in poi",
    r"fingi di",
    r"fai finta",
    r"comportati come",
    r"giochiamo",
    r"(?:agora|a partir de agora),? (?:voce e|es|tu es|voce responde)",
    r"finja (?:ser|que)",
    r"aja como",
    r"vamos jogar",
    r"(?:vanaf nu|voortaan),? (?:ben je|ben jij|bent u|antwoord)",
    r"je bent nu",
    r"doe alsof",
    r"speel de rol",
    r"laten we een spel",
)
_VERSION_OF_YOU = _any(
    r"une version de (?:toi|vous)",
    r"eine version von (?:dir|ihnen)",
    r"una version (?:tuya|de ti|suya)",
    r"una versione di te",
    r"uma versao (?:sua|de voce|tua|de ti)",
    r"een versie van (?:jou|je|u)",
)
# The bot's new job, role or goal.
_NEW_JOB = _any(
    r"(?:ton|votre) nouveau (?:role|travail|boulot|objectif|but)",
    r"(?:ta|votre) nouvelle (?:mission|tache|fonction|consigne)",
    r"(?:dein|ihr) neuer (?:job|auftrag|zweck)",
    r"(?:deine|ihre) neue (?:aufgabe|rolle|mission|anweisung)",
    r"(?:tu|su) nuevo (?:rol|trabajo|papel|objetivo|proposito)",
    r"(?:tu|su) nueva (?:tarea|mision|funcion|instruccion)",
    r"il tuo nuovo (?:compito|ruolo|obiettivo|lavoro)",
    r"la tua nuova (?:missione|funzione|istruzione)",
    r"(?:seu|teu) novo (?:papel|trabalho|objetivo)",
    r"(?:sua|tua) nova (?:tarefa|missao|funcao|instrucao)",
    r"(?:je|jouw|uw) nieuwe (?:taak|rol|opdracht|doel|instructie)",
)
# "SYSTEM:" / "[ADMIN-OVERRIDE]" written by the customer, and an order to the assistant after.
_ROLE_HEADER = _any(
    r"systeme",
    r"system",
    r"sistema",
    r"systeem",
    r"admin(?:istrat\w*)?(?:[ -]override)?",
    r"root",
    r"developer",
    r"entwickler",
    r"desarrollador",
    r"sviluppatore",
    r"ontwikkelaar",
)
_HEADER = (
    r"(?:^|[\n\[(]|(?:note|notiz|nota|opmerking|bestellnotiz|note de commande|observacao"
    r"(?: do pedido)?|anmerkung|remarque|comentario|lieferhinweis|nota del"
    r" pedido|nota dell'ordine|nota do pedido|order note)[^:\n]{0,20}:\s*)\s*\[?" + _ROLE_HEADER
)
_ORDER_AFTER = _any(
    r"must",
    r"should",
    r"shall",
    r"(?:are|is) to",
    r"you are",
    r"the (?:assistant|bot|ai|model)",
    r"ignore",
    r"disregard",
    r"reveal",
    r"override",
    r"refund\w*",
    r"disabled",
    r"enabled",
    r"updated",
    r"new (?:rule|policy|instructions?)",
    r"authori[sz]ed",
    r"grant\w*",
    r"doit",
    r"devez",
    r"effectuer",
    r"muss",
    r"mussen",
    r"soll",
    r"debe",
    r"deve",
    r"devi",
    r"emitir",
    r"moet",
    r"l'assistant\w*",
    r"der assistent",
    r"el asistente",
    r"o assistente",
    r"de assistent",
    r"configura\w*",
    r"konfiguration",
    r"annul\w*",
    r"deaktiviert",
    r"desactiv\w*",
    r"disattivat\w*",
    r"desativad\w*",
    r"uitgeschakeld",
    r"vervallen",
    r"rembourse\w*",
    r"erstatt\w*",
    r"reembols\w*",
    r"rimbors\w*",
    r"terugbetal\w*",
    r"nieuwe regel",
    r"nouvelle regle",
    r"neue regel",
    r"nueva regla",
    r"nuova regola",
    r"nova regra",
)
_FILTERS_OFF = (
    _any(
        r"filtres?",
        r"(?:sicherheits)?filter",
        r"filtros",
        r"filtri",
        r"restrictions",
        r"restricciones",
        r"restrizioni",
        r"restricoes",
        r"beperkingen",
        r"einschrankungen",
    )
    + r"[^.\n]{0,30}?"
    + _any(
        r"desactive\w*",
        r"deaktiviert",
        r"desactivad\w*",
        r"disattivat\w*",
        r"desativad\w*",
        r"uitgeschakeld",
        r"leves",
        r"aufgehoben",
    )
)
_ACCESS_LEVEL = (
    _any(
        r"berechtigungsstufe",
        r"zugriffsebene",
        r"zugriffsstufe",
        r"nivel de acceso",
        r"niveau d'acces",
        r"nivel de acesso",
        r"livello di accesso",
        r"toegangsniveau",
    )
    + r"\s*[:=]?\s*(?:root|admin|max\w*|\d+)"
)
_GRANDMOTHER = _any(
    r"grand-?mother",
    r"grandma",
    r"granny",
    r"nan",
    r"grand-?mere",
    r"mamie",
    r"grossmutter",
    r"oma",
    r"abuel[ao]",
    r"abuelita",
    r"nonna",
    r"avo",
    r"avozinha",
)
_MY_INSTRUCTIONS_SAY = (
    _any(
        r"mes instructions",
        r"mes consignes",
        r"meine anweisungen",
        r"meine regeln",
        r"mis instrucciones",
        r"mis reglas",
        r"le mie istruzioni",
        r"minhas instrucoes",
        r"mijn instructies",
    )
    + r" "
    + _any(
        r"disent",
        r"sont",
        r"sagen",
        r"lauten",
        r"sind",
        r"dicen",
        r"son",
        r"dicono",
        r"sono",
        r"dizem",
        r"sao",
        r"zeggen",
        r"zijn",
    )
)
_WOULD_SAY_AFTER = (
    _YOUR
    + r" "
    + _INSTRUCTIONS
    + r" "
    + _any(r"diraient", r"sagen wurden", r"dirian", r"direbbero", r"diriam", r"zouden zeggen")
)
_SUSPEND = (
    r"(?:setz\w*|stell\w*) (?:\w+ ){0,3}?\w*(?:richtlinien?|regeln?|vorgaben|anweisungen|politik)"
    r"\w* ausser kraft"
)
_FOR_THE_ASSISTANT = (
    _any(
        r"neue anweisung\w*",
        r"nouvelles? instructions?",
        r"nuevas? instrucci\w+",
        r"nuov[ae] istruzion\w+",
        r"novas? instruc\w+",
        r"nieuwe instructies?",
        r"anweisung\w*",
        r"nachricht",
        r"hinweis",
        r"message",
        r"mensaje",
        r"messaggio",
        r"mensagem",
        r"bericht",
        r"note",
        r"nota",
    )
    + r" (?:fur|pour|para|per|voor|an) (?:den |die |l'|el |la |o |de |il |a )?(?:assistent\w*"
    r"|asistente|assistente|assistant|bot|chatbot|ia|ki)\b"
)
_STEER = (
    _any(
        r"recommand\w*",
        r"empfiehl\w*",
        r"empfehlen sie",
        r"recomienda\w*",
        r"raccomand\w*",
        r"consiglia\w*",
        r"recomend\w*",
        r"raad\w*",
        r"beveel\w*",
    )
    + r"\b[^.!?\n]{0,40}?\b"
    + _any(
        r"chaque client",
        r"tous les clients",
        r"jedem kunden",
        r"allen kunden",
        r"cada cliente",
        r"todos los clientes",
        r"ogni cliente",
        r"tutti i clienti",
        r"todos os clientes",
        r"elke klant",
        r"alle klanten",
    )
)
_STANDING = (
    _any(
        r"sempre que",
        r"chaque fois que",
        r"cada vez que",
        r"siempre que",
        r"jedes mal,? wenn",
        r"immer,? wenn",
        r"ogni volta che",
        r"elke keer (?:als|dat)",
        r"wanneer iemand",
    )
    + r"\b[^.!?\n]{0,60}?\b"
    + _any(
        r"diga",
        r"dis",
        r"dites",
        r"di",
        r"sag",
        r"sagen sie",
        r"digan",
        r"dica",
        r"zeg",
        r"reponds",
        r"antworte",
        r"responde",
        r"rispondi",
    )
)
_SMEAR = _any(
    r"golpe",
    r"arnaque",
    r"escroquerie",
    r"betrug",
    r"abzocke",
    r"estafa",
    r"truffa",
    r"oplichting",
    r"oplichters",
    r"concorrencia",
    r"concurrence",
    r"konkurrenz",
    r"competencia",
    r"concorrenza",
    r"concurrent",
)
_AUTHORIZED_SKIP = (
    _any(
        r"autorizad[oa]",
        r"autorise[e]?",
        r"berechtigt",
        r"autorizzat[oa]",
        r"bevoegd",
    )
    + r" (?:a|à|zu|ad|om|para) "
    + _any(
        r"saltar\w*",
        r"ignorer",
        r"ignorar\w*",
        r"ignorieren",
        r"umgehen",
        r"contourner",
        r"ignorare",
        r"saltare",
        r"pular",
        r"negeren",
        r"outrepasser",
    )
)

_COMPLETE = _any(
    r"complete[rz]?",
    r"vervollstandig\w*",
    r"erganze\w*",
    r"completa(?:r)?",
    r"continua(?:r)?",
    r"continue[rz]?",
    r"termina(?:r)?",
    r"maak (?:\w+ )?af",
    r"vul (?:\w+ )?aan",
)
_WOULD_SAY = (
    _any(r"que", r"qu'", r"was", r"cosa", r"o que", r"wat")
    + r" ?"
    + _any(
        r"dirian",
        r"diraient",
        r"dirait",
        r"wurden",
        r"wurde",
        r"direbbero",
        r"diriam",
        r"zouden",
    )
    + r" (?:\w+ )?"
    + _YOUR
    + r" (?:\w+ )?"
    + _INSTRUCTIONS
)


# German and Dutch put the verb last: "die Anweisungen des Bots nicht zeigen".
_VERB_LAST = _any(
    r"delen",
    r"teilen",
    r"mitteilen",
    r"zeigen",
    r"zeigst",
    r"verraten",
    r"verratst",
    r"geben",
    r"nennen",
    r"schreiben",
    r"kopieren",
    r"offenlegen",
    r"vorlesen",
    r"ausgeben",
    r"tonen",
    r"laten zien",
    r"geven",
    r"vertellen",
    r"voorlezen",
)
# Made-up discount codes, asked of the bot.
_CODES = _any(
    r"codes? promo",
    r"codes? (?:de )?(?:reduction|remise|promo)",
    r"bons? de reduction",
    r"rabatt-?codes?",
    r"gutschein-?codes?",
    r"gutscheine?",
    r"codigos? de (?:descuento|desconto)",
    r"cupon(?:es)?",
    r"codici? (?:di )?sconto",
    r"cupo(?:m|ns)",
    r"kortingscodes?",
    r"couponcodes?",
)
_INVENT = _any(
    r"genere[rz]?",
    r"invente[rz]?",
    r"cree[rz]?",
    r"erstell\w*",
    r"generier\w*",
    r"erfind\w*",
    r"genera(?:r)?",
    r"inventa(?:r)?",
    r"crea(?:r)?",
    r"gere",
    r"crie",
    r"genereer",
    r"verzin",
    r"maak",
)
_VALID = r"(?:valides?|gultige?n?|validos?|valido|valid[oa]|geldige?|\d{1,3} ?%)"
_NEVER_REFUSE = _any(
    r"(?:ne )?refuse[sz]? jamais",
    r"sans (?:jamais )?refuser",
    r"ne dis jamais non",
    r"sag niemals nein",
    r"verweigere (?:nie|niemals)",
    r"lehne (?:nie|niemals)",
    r"nunca (?:te )?niegues",
    r"nunca digas (?:que )?no",
    r"sin negarte",
    r"non rifiutare mai",
    r"non dire mai di no",
    r"nunca recuse",
    r"nunca diga (?:que )?nao",
    r"weiger nooit",
    r"zeg nooit nee",
)
_NO_CHECKS = _any(
    r"(?:sans|ohne|sin|senza|sem|zonder) (?:aucune |jegliche |ninguna |alcuna |nenhuma |enige )?"
    r"(?:verification|uberprufung|prufung|verificacion|verifica|verificacao|controle|kontrolle"
    r"|controlli|controles|verificatie)",
    r"(?:ne )?demander aucune verification",
    r"keine (?:uberprufung|prufung|verifizierung) (?:verlangen|anfordern)",
    r"no pedir (?:ninguna )?verificacion",
    r"non chiedere (?:alcuna )?verifica",
    r"nao pedir (?:nenhuma )?verificacao",
    r"geen verificatie vragen",
)
_RUDE = _any(
    r"(?:sois|soyez) (?:impoli|grossier|mechant)",
    r"insulte[rz]? (?:les |le |chaque )?clients?",
    r"beleidige (?:die |jeden )?kunden",
    r"sei unhoflich",
    r"(?:se|sea) (?:grosero|maleducado)",
    r"insulta (?:a )?(?:los |cada )?clientes",
    r"(?:sii|essere) (?:maleducato|scortese)",
    r"insulta (?:i |ogni )?clienti",
    r"(?:seja|se) (?:grosseiro|rude|mal-educado)",
    r"insulte (?:os |cada )?clientes",
    r"wees (?:zo )?(?:onbeleefd|grof|brutaal)",
    r"beledig (?:de |elke )?klant",
)
_ROLE_LABELS = (
    r"(?:user|human|customer|client|utilisateur|benutzer|nutzer|kunde|usuario|cliente|utente"
    r"|gebruiker|klant)"
)
_BOT_LABELS = (
    r"(?:[\w ]{0,20} )?(?:assistant|assistent|asistente|assistente|bot|ia|ki|ai|chatbot)"
    r"(?: [\w]{1,20})?"
)
_ABOVE = _any(
    r"tout ce qui (?:precede|est au-dessus)",
    r"le texte (?:ci-dessus|precedent)",
    r"alles (?:oben|davor|daruber|vorherige)",
    r"den (?:obigen|vorherigen) text",
    r"todo lo anterior",
    r"el texto (?:anterior|de arriba)",
    r"tutto (?:quanto |cio che )?(?:sopra|precede)",
    r"il testo (?:precedente|sopra)",
    r"tudo (?:acima|o que veio antes)",
    r"o texto (?:acima|anterior)",
    r"alles hierboven",
    r"de tekst hierboven",
)
_WRITTEN_BEFORE = (
    _any(
        r"ce qui est ecrit",
        r"was steht",
        r"que hay escrito",
        r"cosa c'e scritto",
        r"o que esta escrito",
        r"wat staat er",
    )
    + r" (?:\w+ ){0,2}?"
    + _any(r"au-dessus", r"avant", r"uber", r"vor", r"antes", r"prima", r"boven", r"voor", r"acima")
)
_DEBUG_MODE = _any(
    r"mode (?:debug|maintenance|developpeur|dieu|admin|sans filtre)",
    r"(?:debug|wartungs|entwickler|admin|gott)-?modus",
    r"modo (?:depuracion|debug|mantenimiento|desarrollador|dios|administrador|sin filtros)",
    r"modalita (?:debug|sviluppatore|manutenzione|dio)",
    r"modo (?:desenvolvedor|manutencao|deus)",
    r"(?:debug|ontwikkelaars|beheerders)modus",
)
_LAWLESS = _any(
    r"(?:qui|der|die|que|che) (?:\w+ )?(?:ignore|ignoriert|ignora|negeert) (?:toutes )?(?:les |die "
    r"|las |le |as |de )?(?:regles|regeln|reglas|regole|regras|regels)",
    r"(?:qui )?n'a (?:pas|aucune) (?:de )?regles",
    r"(?:halt|halten) sich an keine (?:regeln|vorgaben)",
    r"an keine (?:regeln|vorgaben)",
    r"der keine regeln (?:hat|kennt)",
    r"que no tiene (?:reglas|normas|limites)",
    r"che non ha (?:regole|limiti)",
    r"que nao tem regras",
    r"die geen regels (?:heeft|kent)",
)
_HYPOTHETICAL = _any(
    r"hypothetiquement",
    r"hypothetisch",
    r"hipoteticamente",
    r"ipoteticamente",
    r"imaginons",
    r"stell dir vor",
    r"imagina",
    r"immagina",
    r"stel je voor",
)

MORE_RULES: tuple[tuple[str, str, str, frozenset[Point]], ...] = (
    (
        "i18n-prompt-then-verb",
        "strong",
        r"\b(?:" + _HIDDEN_PROMPT + r"|" + _YOUR_RULES + r")[^.!?\n]{0,30}?\b" + _VERB_LAST + r"\b",
        NOT_RETRIEVAL,
    ),
    (
        "i18n-made-up-codes",
        "strong",
        r"\b"
        + _INVENT
        + r"\b[^.!?\n]{0,40}?\b"
        + _CODES
        + r"\b|\b"
        + _CODES
        + r"\b[^.!?\n]{0,20}?"
        + _VALID
        + r"|\b"
        + _VALID
        + r"[^.!?\n]{0,20}?\b"
        + _CODES
        + r"\b",
        NOT_RETRIEVAL,
    ),
    ("i18n-never-refuse", "medium", r"\b" + _NEVER_REFUSE + r"\b", NOT_RETRIEVAL),
    ("i18n-no-checks", "medium", r"\b" + _NO_CHECKS + r"\b", NOT_RETRIEVAL),
    ("i18n-rude", "strong", r"\b" + _RUDE + r"\b", NOT_RETRIEVAL),
    (
        "i18n-transcript",
        "medium",
        r"(?:^|\n)\s*"
        + _ROLE_LABELS
        + r"\s*:[^\n]*\n(?:[^\n]*\n){0,6}?\s*"
        + _BOT_LABELS
        + r"\s*:",
        NOT_RETRIEVAL,
    ),
    ("i18n-prefill", "strong", r"\n\s*" + _BOT_LABELS + r"\s*:\s*$", NOT_RETRIEVAL),
    ("i18n-text-above", "strong", r"\b" + _REVEAL + r"\b[^.!?\n]{0,20}?\b" + _ABOVE, NOT_RETRIEVAL),
    ("i18n-written-before", "medium", r"\b" + _WRITTEN_BEFORE + r"\b", NOT_RETRIEVAL),
    ("i18n-debug-mode", "medium", r"\b" + _DEBUG_MODE + r"\b", NOT_RETRIEVAL),
    ("i18n-lawless-character", "medium", r"\b" + _LAWLESS + r"\b", NOT_RETRIEVAL),
    ("i18n-hypothetical", "weak", r"\b" + _HYPOTHETICAL + r"\b", NOT_RETRIEVAL),
    (
        "would-say",
        "medium",
        r"\bwhat (?:would|do|does|did|will) (?:your|the) (?:\w+ )?(?:instructions|rules|prompt"
        r"|guidelines|directives) (?:say|contain|tell|read)\b",
        NOT_RETRIEVAL,
    ),
    (
        "unbound-if",
        "medium",
        r"\bif you (?:had|were|have) (?:no|without|free (?:of|from)|not bound by|never had)"
        r" (?:any )?(?:rules|restrictions|filters|limits|guidelines|instructions|safeguards)\b",
        NOT_RETRIEVAL,
    ),
    (
        "tool-markup",
        "medium",
        r"</?(?:tool|function|tool_call|function_call|tool_result|observation|api|system"
        r"|assistant[_-]?instructions?|system[_-]?(?:prompt|message|instructions?)|instructions?"
        r"|admin|developer|ai[_-]?instructions?)[^>]{0,40}>"
        r"|\[(?:tool|function|api)[ _-]?(?:result|output|call|response)\]"
        r"|\b(?:tool|function|api) (?:output|result|response)\s*:",
        NOT_RETRIEVAL,
    ),
    ("hidden-comment", "medium", r"<!--|\[//\]: ?#", NOT_RETRIEVAL),
    (
        "named-ai",
        "medium",
        r"\byou are [a-z0-9-]+, (?:an?|the) (?:\w+ )?(?:ai|assistant|bot|model|chatbot)\b",
        NOT_RETRIEVAL,
    ),
)

# (name, weight level, pattern, points). Weights are the English rules' (injection.py):
# "strong" blocks alone, "medium" needs a second signal.
RULES: tuple[tuple[str, str, str, frozenset[Point]], ...] = (
    (
        "i18n-set-aside",
        "strong",
        _SET_ASIDE
        + r"(?:"
        + _SPAN
        + r"\b"
        + _QUALIFIER
        + r"\b[^.!?\n]{0,25}?\b"
        + _RULES
        + r"\b|[^.!?\n]{0,25}?\b"
        + _RULES
        + r"\b (?:"
        + _QUALIFIER
        + r")\b)",
        ALL_POINTS,
    ),
    ("i18n-forget-all", "strong", _FORGET_ALL, ALL_POINTS),
    ("i18n-reveal-prompt", "strong", _REVEAL + r"\b" + _SPAN + r"\b" + _HIDDEN_PROMPT, ALL_POINTS),
    ("i18n-reveal-rules", "medium", _REVEAL + r"\b" + _SPAN + r"\b" + _YOUR_RULES, NOT_RETRIEVAL),
    ("i18n-hidden-prompt", "medium", r"\b" + _HIDDEN_PROMPT + r"\b", ALL_POINTS),
    ("i18n-given", "strong", _GIVEN, ALL_POINTS),
    ("i18n-first-message", "medium", _FIRST_MESSAGE, ALL_POINTS),
    ("i18n-verbatim", "medium", r"\b" + _VERBATIM + r"\b", NOT_RETRIEVAL),
    ("i18n-unfiltered", "medium", r"\b" + _UNFILTERED, NOT_RETRIEVAL),
    ("i18n-persona", "medium", r"\b" + _PERSONA, NOT_RETRIEVAL),
    ("i18n-version-of-you", "medium", r"\b" + _VERSION_OF_YOU + r"\b", NOT_RETRIEVAL),
    ("i18n-new-job", "strong", r"\b" + _NEW_JOB + r"\b", NOT_RETRIEVAL),
    ("i18n-role-header", "medium", _HEADER + r"\b\]?\s*[:\]]", NOT_RETRIEVAL),
    (
        "i18n-role-header-order",
        "strong",
        _HEADER + r"\b\]?\s*[:\]][^\n]{0,120}?\b" + _ORDER_AFTER,
        NOT_RETRIEVAL,
    ),
    ("i18n-filters-off", "medium", r"\b" + _FILTERS_OFF, NOT_RETRIEVAL),
    ("i18n-access-level", "medium", r"\b" + _ACCESS_LEVEL, NOT_RETRIEVAL),
    (
        "i18n-bedtime-prompt",
        "medium",
        r"\b" + _GRANDMOTHER + r"\b[^\n]{0,120}?\b(?:" + _HIDDEN_PROMPT + r"|" + _YOUR_RULES + ")",
        NOT_RETRIEVAL,
    ),
    ("i18n-my-instructions-say", "medium", r"\b" + _MY_INSTRUCTIONS_SAY + r"\b", NOT_RETRIEVAL),
    ("i18n-complete", "medium", r"\b" + _COMPLETE + r"\b[^\n]{0,80}?['\"«„“]", NOT_RETRIEVAL),
    ("i18n-would-say-after", "medium", r"\b" + _WOULD_SAY_AFTER + r"\b", NOT_RETRIEVAL),
    ("i18n-suspend-rules", "strong", r"\b" + _SUSPEND + r"\b", NOT_RETRIEVAL),
    ("i18n-for-the-assistant", "strong", r"\b" + _FOR_THE_ASSISTANT, NOT_RETRIEVAL),
    ("i18n-steer-customers", "strong", r"\b" + _STEER + r"\b", NOT_RETRIEVAL),
    ("i18n-standing-order", "medium", r"\b" + _STANDING + r"\b", NOT_RETRIEVAL),
    ("i18n-smear", "medium", r"\b" + _SMEAR + r"\b", NOT_RETRIEVAL),
    ("i18n-authorized-skip", "medium", r"\b" + _AUTHORIZED_SKIP + r"\b", NOT_RETRIEVAL),
    (
        "i18n-story-framing",
        "weak",
        r"\b(?:ecris|ecrivez|schreib\w*|escribe|scrivi|escreva|schrijf) (?:un|une|einen|eine|ein|uma"
        r"|een|uno) (?:dialogue|dialog|histoire|geschichte|historia|storia|verhaal|dialoog|dialogo"
        r"|scene|szene|escena|cena)\b",
        NOT_RETRIEVAL,
    ),
    ("i18n-would-say", "medium", r"\b" + _WOULD_SAY + r"\b", NOT_RETRIEVAL),
    *MORE_RULES,
)


def compiled() -> tuple[tuple[str, str, re.Pattern[str], frozenset[Point]], ...]:
    return tuple(
        (name, level, re.compile(pattern), points) for name, level, pattern, points in RULES
    )
