"""What the clerk reads about their own work: signing in and out, looking a person up,
card status changes and e-card codes, in Simplified Chinese (the default) and English.

One flat table of stable keys (``clerk.<area>.<what>.<part>``, part one of ``title``,
``detail``, ``next``) to both texts, so the message catalogues can take them over
mechanically. Texts may hold ``{name}`` fields, filled by :func:`clerk_words`. The
language is zh-CN unless the request's ``Accept-Language`` starts with ``en``.
"""

# ruff: noqa: E501 - a table of texts, one entry per line where it fits
from __future__ import annotations

from typing import Any

from reader_agent.page.words import Words

__all__ = ["LANGUAGES", "TEXTS", "clerk_words", "language", "text"]

LANGUAGES = ("zh-CN", "en")

# fmt: off
TEXTS: dict[str, dict[str, str]] = {
    # -- signing in and out ------------------------------------------------------------
    "clerk.signin.wrong-password.title": {"zh-CN": "工号或密码不正确", "en": "Wrong clerk ID or password"},
    "clerk.signin.wrong-password.detail": {
        "zh-CN": "未能登录：工号或密码不正确。{tries}",
        "en": "Not signed in: the clerk ID or the password is wrong. {tries}"},
    "clerk.signin.wrong-password.tries": {
        "zh-CN": "再输错 {n} 次将暂时锁定。", "en": "{n} more wrong tries lock the sign-in for a while."},
    "clerk.signin.wrong-password.next": {
        "zh-CN": "请核对工号，重新输入密码。", "en": "Check the clerk ID and type the password again."},
    "clerk.signin.locked.title": {"zh-CN": "登录已暂时锁定", "en": "Sign-in locked for now"},
    "clerk.signin.locked.detail": {
        "zh-CN": "密码输错次数过多，该工号暂时锁定，至北京时间 {until} 解除。",
        "en": "Too many wrong passwords: this clerk ID is locked until {until} (Beijing time)."},
    "clerk.signin.locked.next": {
        "zh-CN": "请稍后再试；如忘记密码，请联系系统管理员重新登记。",
        "en": "Try again later; if the password is forgotten, ask the administrator to enrol "
              "you again."},
    "clerk.signin.refused.title": {"zh-CN": "发卡方拒绝登录", "en": "The issuer refused the sign-in"},
    "clerk.signin.refused.detail": {
        "zh-CN": "发卡方不接受该工号的密钥（工号可能已停用或注销）。",
        "en": "The issuer does not accept this clerk's key (the clerk may be suspended or "
              "removed)."},
    "clerk.signin.refused.next": {
        "zh-CN": "请联系系统管理员。", "en": "Ask the administrator."},
    "clerk.signin.damaged.title": {"zh-CN": "登录资料损坏", "en": "Clerk file damaged"},
    "clerk.signin.damaged.detail": {
        "zh-CN": "本柜台保存的该工号登录资料无法读取。",
        "en": "This counter's sign-in file for the clerk cannot be read."},
    "clerk.signin.damaged.next": {
        "zh-CN": "请联系系统管理员重新登记该工号。", "en": "Ask the administrator to enrol the clerk again."},
    "clerk.signin.done.title": {"zh-CN": "已登录", "en": "Signed in"},
    "clerk.signin.done.detail": {
        "zh-CN": "{name}（{client_id}）已登录。", "en": "{name} ({client_id}) is signed in."},
    "clerk.signin.offline.detail": {
        "zh-CN": "{name}（{client_id}）已离线登录：发卡方暂时无法连接，查询和卡片业务待联网后可办理。",
        "en": "{name} ({client_id}) is signed in offline: the issuer cannot be reached, so "
              "look-ups and card services wait until the counter is online."},
    "clerk.signout.done.title": {"zh-CN": "已退出登录", "en": "Signed out"},
    "clerk.signout.done.detail": {
        "zh-CN": "已退出登录，本页的卡片核验和回执已清除。",
        "en": "Signed out; the card check and receipt were cleared from the page."},
    "clerk.needed.title": {"zh-CN": "请先登录", "en": "Please sign in first"},
    "clerk.needed.detail": {
        "zh-CN": "办理此项业务须先以柜员身份登录。", "en": "This needs a clerk signed in at the counter."},
    "clerk.needed.next": {"zh-CN": "请输入工号和密码登录。", "en": "Sign in with your clerk ID and password."},
    "clerk.expired.title": {"zh-CN": "登录已超时", "en": "Signed out for inactivity"},
    "clerk.expired.detail": {
        "zh-CN": "长时间未操作，已自动退出登录，本页已清除。",
        "en": "No activity for too long: the clerk was signed out and the page cleared."},
    # -- the clerk's rights and the issuer ----------------------------------------------
    "clerk.forbidden.title": {"zh-CN": "无权办理", "en": "Not allowed for your role"},
    "clerk.forbidden.detail": {
        "zh-CN": "您的岗位无权办理此项业务，未做任何更改。",
        "en": "Your role may not do this; nothing was changed."},
    "clerk.forbidden.next": {
        "zh-CN": "请由有权限的柜员办理，或联系系统管理员。",
        "en": "Ask a clerk who may do it, or the administrator."},
    "clerk.unreachable.title": {"zh-CN": "发卡方无法连接", "en": "Issuer unreachable"},
    "clerk.unreachable.detail": {
        "zh-CN": "暂时无法连接发卡方，本项业务未办理。",
        "en": "The issuer cannot be reached right now; nothing was done."},
    "clerk.unreachable.next": {
        "zh-CN": "请待柜台恢复联网（页面顶部标识）后重试。",
        "en": "Try again when the counter is online (the badge at the top)."},
    "clerk.issuer-refused.title": {"zh-CN": "发卡方拒绝办理", "en": "The issuer refused"},
    "clerk.issuer-refused.detail": {
        "zh-CN": "发卡方拒绝了本次请求，未做任何更改。（{reason}）",
        "en": "The issuer refused the request; nothing was changed. ({reason})"},
    "clerk.issuer-refused.next": {
        "zh-CN": "如有疑问，请记下时间并联系技术支持。",
        "en": "If this looks wrong, note the time and call support."},
    # -- looking a person up -------------------------------------------------------------
    "clerk.person.invalid-id.title": {"zh-CN": "身份证号码有误", "en": "ID number not valid"},
    "clerk.person.invalid-id.detail": {
        "zh-CN": "输入的不是有效的18位公民身份号码（校验位不符或格式错误）。",
        "en": "That is not a valid 18-character citizen ID number (format or check digit)."},
    "clerk.person.invalid-id.next": {
        "zh-CN": "请核对证件后重新输入。", "en": "Check the ID document and type it again."},
    "clerk.person.not-found.title": {"zh-CN": "查无此人", "en": "No such person"},
    "clerk.person.not-found.detail": {
        "zh-CN": "发卡方没有该身份证号码的参保人员登记。",
        "en": "The issuer has no person enrolled with that ID number."},
    "clerk.person.not-found.next": {
        "zh-CN": "请核对号码；如确未登记，请按参保登记流程办理。",
        "en": "Check the number; if the person is not enrolled, follow the enrolment "
              "procedure."},
    # -- card status changes --------------------------------------------------------------
    "clerk.card.not-checked.title": {"zh-CN": "请先核验此卡", "en": "Check this card first"},
    "clerk.card.not-checked.detail": {
        "zh-CN": "恢复使用前须先在读卡器上核验此卡为真卡（卡号 {card_number}）。",
        "en": "Before resuming, this card ({card_number}) must pass the genuine-card check "
              "in the reader."},
    "clerk.card.not-checked.next": {
        "zh-CN": "请将此卡插入读卡器，等待核验完成后再恢复。",
        "en": "Insert this card in the reader, wait for the check, then resume it."},
    "clerk.card.wrong-state.title": {"zh-CN": "此卡当前状态不能办理", "en": "Not possible in the card's state"},
    "clerk.card.wrong-state.detail": {
        "zh-CN": "此卡当前状态不允许该操作，未做任何更改。（{reason}）",
        "en": "The card's present state does not allow this; nothing was changed. ({reason})"},
    "clerk.card.wrong-state.next": {
        "zh-CN": "请查询此人的卡片状态后再办理。", "en": "Look the person's cards up again, then decide."},
    "clerk.card.resumed.title": {"zh-CN": "已恢复使用", "en": "Card resumed"},
    "clerk.card.resumed.detail": {
        "zh-CN": "卡号 {card_number} 已恢复正常使用。", "en": "Card {card_number} is in use again."},
    "clerk.card.loss-reported.title": {"zh-CN": "已挂失", "en": "Loss reported"},
    "clerk.card.loss-reported.detail": {
        "zh-CN": "卡号 {card_number} 已{what}。",
        "en": "Card {card_number}: {what}."},
    "clerk.card.loss-temporary": {"zh-CN": "临时挂失（暂停使用，可凭卡恢复）",
                                  "en": "temporary loss reported (suspended; can be resumed with the card)"},
    "clerk.card.loss-formal": {"zh-CN": "正式挂失（永久停用，须补办新卡）",
                               "en": "formal loss reported (revoked for good; a new card is needed)"},
    # -- receipts -------------------------------------------------------------------------
    "clerk.receipt.not-found.title": {"zh-CN": "没有这张回执", "en": "No such receipt"},
    "clerk.receipt.not-found.detail": {
        "zh-CN": "本柜台流水中没有序号为 {seq} 的已签名交易。",
        "en": "This counter's journal holds no signed transaction number {seq}."},
    "clerk.receipt.not-found.next": {
        "zh-CN": "请按卡号查找回执。", "en": "Look the receipt up by card number."},
    # -- e-card --------------------------------------------------------------------------
    "clerk.ecard.activated.title": {"zh-CN": "电子社保卡已激活", "en": "E-card activated"},
    "clerk.ecard.activated.detail": {
        "zh-CN": "{name}（卡号 {card_number}）的电子社保卡已在本人手机上激活；此前绑定的手机不再可用。",
        "en": "The e-card of {name} (card {card_number}) is active on their phone; a phone bound before no longer works."},
    "clerk.ecard.activated.next": {
        "zh-CN": "请本人在手机上确认电子社保卡可以出示。", "en": "Ask the holder to check that the phone shows the e-card."},
    "clerk.ecard.code-issued.title": {"zh-CN": "已生成激活码", "en": "Activation code issued"},
    "clerk.ecard.code-issued.detail": {
        "zh-CN": "电子社保卡激活码已生成，有效期至北京时间 {until}，只显示这一次。此前未使用的激活码已作废。",
        "en": "The e-card activation code is valid until {until} (Beijing time) and is shown "
              "only this once. Any earlier unused code no longer works."},
    "clerk.ecard.code-issued.next": {
        "zh-CN": "请将激活码交给本人，在手机上激活电子社保卡。",
        "en": "Hand the code to the person to activate the e-card on their phone."},
}
# fmt: on


def language(accept_language: str | None) -> str:
    """zh-CN unless the header starts with ``en`` (``en``, ``en-US``, ``en;q=0.8``...)."""
    return "en" if (accept_language or "").strip().lower().startswith("en") else "zh-CN"


def text(key: str, lang: str, **fields: object) -> str:
    """The text of ``key`` in ``lang`` (zh-CN when the language is unknown), filled in."""
    entry = TEXTS[key]
    return entry.get(lang, entry["zh-CN"]).format(**fields)


def clerk_words(
    key: str,
    lang: str,
    *,
    status: int,
    detail: str | None = None,
    extra: dict[str, Any] | None = None,
    **fields: object,
) -> Words:
    """The problem (or confirmation) ``clerk.<key>``: title, detail and next step."""
    base = f"clerk.{key}"
    next_key = f"{base}.next"
    return Words(
        status=status,
        code=f"clerk-{key.replace('.', '-')}",
        title=text(f"{base}.title", lang),
        detail=detail if detail is not None else text(f"{base}.detail", lang, **fields),
        next=text(next_key, lang, **fields) if next_key in TEXTS else "",
        extra=dict(extra or {}),
    )
