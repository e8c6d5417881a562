"""Small stop-word lists: the function words that top every frequency count.

Deliberately short (the most frequent articles, pronouns, prepositions,
conjunctions and auxiliaries): enough that a document's top words say what it
is about, without a dependency or a data file. Words are casefolded, as
:func:`docpipe.activities.cpu.compress.word_frequencies` compares them.
"""

from __future__ import annotations

_LISTS: dict[str, str] = {
    "en": """
        a about above after again against all also am an and any are as at be because been
        before being below between both but by can could did do does doing down during each
        few for from further had has have having he her here hers herself him himself his how
        i if in into is it its itself just may me might more most must my myself no nor not
        now of off on once only or other our ours ourselves out over own same shall she should
        so some such than that the their theirs them themselves then there these they this
        those through to too under until up very was we were what when where which while who
        whom why will with would you your yours yourself yourselves don't it's i'm can't
        won't isn't doesn't didn't that's there's let's we're they're you're
    """,
    "de": """
        aber alle allem allen aller alles als also am an andere anderen auch auf aus bei bin
        bis bist da damit dann das dass dein deine dem den denn der des dessen die dies diese
        diesem diesen dieser dieses doch dort du durch ein eine einem einen einer eines er es
        etwas euch euer für gegen gewesen hab habe haben hat hatte hatten hier hin hinter ich
        ihm ihn ihnen ihr ihre im in indem ins ist jede jedem jeden jeder jedes jetzt kann
        kein keine können könnte man mein meine mich mir mit muss nach nicht nichts noch nun
        nur ob oder ohne sehr sein seine sich sie sind so solche soll sollte sondern über um
        und uns unser unter viel vom von vor war waren was weil welche wenn wer werde werden
        wie wieder wir wird wo wurde wurden zu zum zur zwar zwischen
    """,
    "fr": """
        à ai aie aient ainsi alors as au aucun aussi autre aux avaient avais avait avec avez
        avoir avons ce ceci cela celle celles celui ces cet cette ceux chaque comme dans de
        des donc dont du elle elles en encore entre est et étaient était étant été être eu
        eux fait il ils je la le les leur leurs lui mais me même mes moi mon ne ni nos notre
        nous on ont ou où par pas peu peut plus pour pourquoi qu que quel quelle quels qui
        sa sans se ses si son sont sous sur ta te tes toi ton tous tout toute toutes très tu
        un une vos votre vous y
    """,
    "es": """
        a al algo algunos ante antes como con contra cual cuando de del desde donde dos el él
        ella ellas ellos en entre era eran es esa esas ese eso esos esta está están estas este
        esto estos fue fueron ha había han hasta hay la las le les lo los más me mi mis mucho
        muy nada ni no nos nosotros o otra otras otro otros para pero poco por porque que
        qué quien se sea ser si sí sido sin sobre son su sus también tan te tiene tienen
        todo todos tu tus un una uno unos y ya yo
    """,
    "it": """
        a ad agli ai al alla alle allo anche avere aveva avevano che chi ci come con contro
        cui da dai dal dalla dalle degli dei del della delle dello di dove e è ed era erano
        essere gli ha hanno ho i il in io la le lei lo loro lui ma mi mia mio molto ne negli
        nei nel nella nelle no noi non nostro o per perché più può quale quando quella quelle
        quello questa queste questi questo se sei si sia siamo sono su sua sue sui sul sulla
        suo suoi tra tu tutti tutto un una uno vi voi
    """,
    "pt": """
        a à ao aos as às até com como da das de dela dele deles do dos e é ela elas ele eles
        em entre era eram essa essas esse esses esta está estão estas este estes eu foi foram
        há isso isto já lhe lhes mais mas me mesmo meu minha muito na nas não nem no nos nós
        num numa o os ou para pela pelas pelo pelos por qual quando que quem se sem ser seu
        seus sua suas são também te tem têm tu um uma umas uns você vocês
    """,
    "nl": """
        aan al alle als altijd ben bij daar dan dat de der deze die dit doch doen door dus een
        eens en er ge geen geweest haar had heb hebben heeft hem het hier hij hoe hun iemand
        ik in is ja je kan kon kunnen maar me meer men met mij mijn moet na naar niet niets
        nog nu of om omdat onder ons ook op over reeds te tegen toch toen tot u uit uw van
        veel voor want waren was wat we wel werd wezen wie wij wil worden wordt zal ze zei
        zelf zich zij zijn zo zonder zou
    """,
}

STOP_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset(word.casefold() for word in words.split()) for lang, words in _LISTS.items()
}


def stop_words(language: str) -> frozenset[str]:
    """The stop words of an ISO 639-1 ``language``; empty for languages without a list."""
    return STOP_WORDS.get(language, frozenset())
