"""People: the user model (AUTH_USER_MODEL), with the e-mail address as the login identifier."""

from __future__ import annotations

import re
import unicodedata
import uuid
import zoneinfo
from datetime import date, datetime
from encodings import idna as idna_codec
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator, validate_email
from django.db import models
from django.utils import timezone


def canonical_email(value: str) -> str:
    """The one form of an e-mail address that is stored, looked up (exactly) and throttled.

    Surrounding space removed; NFKC (UTS #15, as Django's ``normalize_username`` and RFC 8265 §3.4.1
    do), which maps compatibility characters onto what they stand for (the long s U+017F → ``s``, the
    Kelvin sign U+212A → ``K``, fullwidth letters → ASCII); then lower case, local part included
    (addresses are case-insensitive in practice), and NFKC again. Not case *folding*: that rewrites the
    mailbox itself (``ß`` → ``ss``), and the address is what UAA releases as the ``email`` claim. Letters
    that only look alike (dotless i U+0131, dotted capital I U+0130, Cyrillic a U+0430) stay different
    addresses: they are never a spelling of another account.

    Look-ups compare this form exactly, never case-insensitively in SQL: PostgreSQL's ``UPPER()`` folds
    U+0131 to ``I`` and U+017F to ``S``, so an ``iexact`` look-up would find an account under a spelling
    whose failures the lock counts elsewhere.
    """
    text = unicodedata.normalize("NFKC", (value or "").strip())
    return unicodedata.normalize("NFKC", text.lower())


# --- an address a new account may have: never a look-alike of another --------------------------------------
NOT_AN_ADDRESS = (
    "Enter an e-mail address: a mailbox name in ASCII letters, digits and dots, @, a domain name."
)
LOOK_ALIKE = "Each part of the domain name must be a valid internationalised name written in one script."
# RFC 5321 §4.1.2 Dot-string (RFC 5322 §3.4.1 dot-atom) in lower case, ASCII only: no quoted string (a
# quoted ``"alice"`` is the mailbox ``alice``), no RFC 6531 UTF-8 mailbox (where look-alike letters live).
DOT_ATOM = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*", re.ASCII)
# UTS #39 §5.2 "highly restrictive": one script, or Latin with Han and one of the scripts written with it.
SCRIPT_MIXES = (
    {"LATIN", "CJK", "HIRAGANA", "KATAKANA"},
    {"LATIN", "CJK", "HANGUL"},
    {"LATIN", "CJK", "BOPOMOFO"},
)


def _scripts(label: str) -> set[str]:
    """The scripts of a label's letters, by the first word of their Unicode names (``CYRILLIC SMALL
    LETTER A``); digits, hyphens and combining marks belong to none."""
    return {unicodedata.name(ch, "?").split(" ")[0] for ch in label if ch.isalpha()}


# Characters that show as nothing (or as a blank) where a letter of a name may stand: the Hangul fillers
# (U+115F, U+1160, U+3164, U+FFA0: Hangul letters to the script rule, which lets them mix with Latin), the
# combining grapheme joiner, the Khmer inherent vowels, the Mongolian free variation selectors and vowel
# separator, the variation selectors and the braille blank. IDNA 2008 (RFC 5892) disallows every one.
_INVISIBLE = frozenset(
    [
        *(0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F, 0x17B4, 0x17B5, 0x2800),
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
    ]
)


def _invisible(label: str) -> bool:
    """A character of ``label`` that shows as nothing: one of :data:`_INVISIBLE`, or a format, control,
    separator, private-use or unassigned code point (``Cf``, ``Cc``, ``Z*``, ``Co``, ``Cn``)."""
    return any(
        ord(ch) in _INVISIBLE or unicodedata.category(ch) in {"Cf", "Cc", "Zs", "Zl", "Zp", "Co", "Cn"}
        for ch in label
    )


def _u_label(label: str) -> str | None:
    """RFC 5890 §2.3.2.1: the label as Unicode if it is a valid IDNA label, else ``None``. An A-label
    (``xn--``) must decode; a U-label must survive IDNA's mapping unchanged (RFC 3491 nameprep drops a
    zero-width joiner or a soft hyphen, and folds ``ß``: the mail would go to another name than stored)."""
    try:
        if label.isascii():
            if not label.startswith("xn--"):
                return label
            decoded = idna_codec.ToUnicode(label)
            return decoded if decoded != label else None
        return label if idna_codec.ToUnicode(idna_codec.ToASCII(label)) == label else None
    except UnicodeError:
        return None


def validate_account_email(value: str) -> str:
    """The stored form (``canonical_email``) of an address a new account may have, or ValidationError:
    the one check of the admin API, the Django admin and ``User.objects.create_user``.

    Case, width and compatibility variants of an address are that address (unique as stored). Refused:
    anything Django's ``validate_email`` refuses (a trailing dot, ``..``), a quoted or non-ASCII mailbox
    name, an address literal (``[127.0.0.1]``), and a domain label that is no valid IDNA label or mixes
    scripts (UTS #39 §5.2: ``ex\u0430mple`` with a Cyrillic a, U+0430; its A-label ``xn--exmple-4nf`` too).
    A label with a character that shows as nothing (a Hangul filler, a variation selector: ``_invisible``)
    is refused too. Whole-script look-alikes (a label all in Cyrillic letters shaped like Latin ones) and
    Latin letters shaped like others (LATIN SMALL LETTER ALPHA, U+0251, for an a; a dotless i) are not
    detected: that needs UTS #39's confusables data.
    """
    address = canonical_email(value)
    try:
        validate_email(address)
    except ValidationError:
        raise ValidationError(NOT_AN_ADDRESS, code="invalid") from None
    local, _, domain = address.rpartition("@")
    if not DOT_ATOM.fullmatch(local) or domain.startswith("["):
        raise ValidationError(NOT_AN_ADDRESS, code="invalid")
    for label in domain.split("."):
        unicode_label = _u_label(label)
        if unicode_label is None or _invisible(unicode_label):
            raise ValidationError(LOOK_ALIKE, code="invalid")
        scripts = _scripts(unicode_label)
        if len(scripts) > 1 and not any(scripts <= mix for mix in SCRIPT_MIXES):
            raise ValidationError(LOOK_ALIKE, code="invalid")
    return address


# --- OIDC Core §5.1 profile claims: what a stored value must look like ---------------------------------
https_url = URLValidator(schemes=["https"], message="Enter an https:// URL.")
# BCP 47 (RFC 5646) in the shape §5.1 gives: a language, then optional subtags ("en", "en-US", "zh-Hant-TW").
locale_tag = RegexValidator(
    r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", message="Enter a BCP 47 language tag such as en-US."
)
# E.164 with an optional RFC 3966 extension, as §5.1 recommends ("+1 (425) 555-1212" is written +14255551212).
phone_e164 = RegexValidator(
    r"^\+[1-9][0-9]{6,14}(;ext=[0-9]{1,10})?$", message="Enter an E.164 number such as +14255551212."
)
BIRTHDATE = re.compile(r"^(?P<year>[0-9]{4})(-(?P<month>[0-9]{2})-(?P<day>[0-9]{2}))?$")


def validate_zoneinfo(value: str) -> None:
    """§5.1 zoneinfo: a name from the IANA time zone database, such as Europe/Paris."""
    if value not in zoneinfo.available_timezones():
        raise ValidationError("Enter an IANA time zone name such as Europe/Paris.", code="invalid")


def validate_birthdate(value: str) -> None:
    """§5.1 birthdate: YYYY-MM-DD, YYYY alone, or 0000-MM-DD when the year is left out; a real date."""
    match = BIRTHDATE.match(value)
    if match is None:
        raise ValidationError("Enter YYYY-MM-DD or YYYY.", code="invalid")
    year = int(match["year"])
    if match["month"] is None:
        if year == 0:
            raise ValidationError("Enter YYYY-MM-DD or YYYY.", code="invalid")
        return
    try:
        date(year or 2000, int(match["month"]), int(match["day"]))  # 2000: any leap year for 0000-02-29
    except ValueError:
        raise ValidationError("Enter a real date.", code="invalid") from None


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        return canonical_email(email or "")

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        if not email:
            raise ValueError("A user needs an e-mail address.")
        address = canonical_email(email)
        if self.filter(email=address).exists():
            raise ValueError("An account with this e-mail address exists.")
        validate_account_email(address)  # ValidationError: not an address a new account may have
        user = self.model(email=address, **fields)
        user.set_password(password)  # None gives an unusable password
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)

    def get_by_natural_key(self, username: str | None) -> User:
        """The account with exactly this address once normalised (``canonical_email``); never ``iexact``."""
        return self.get(email=canonical_email(username or ""))


# django-stubs cannot resolve the reverse managers of django-oauth-toolkit's swappable models (oauth.Client,
# oauth.AuthorizationCode) on a custom user model; nothing here uses them.
class User(AbstractBaseUser, PermissionsMixin):  # type: ignore[django-manager-missing]
    """A person. ``id`` is a random UUID and is the OIDC ``sub``: it reveals nothing about order or count."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField("e-mail address", unique=True)
    email_verified = models.BooleanField(default=False)
    given_name = models.CharField(max_length=150, blank=True)
    family_name = models.CharField(max_length=150, blank=True)
    # The other OIDC Core §5.1 claims a deployment keeps (released by scope: uaa/oauth/claims.py); blank is
    # "not known" and is never released.
    middle_name = models.CharField(max_length=150, blank=True)
    nickname = models.CharField(max_length=150, blank=True)
    preferred_username = models.CharField(
        max_length=150, blank=True, help_text="Shown to applications; not unique, not an identifier."
    )
    profile = models.URLField("profile page", max_length=500, blank=True, validators=[https_url])
    picture = models.URLField(max_length=500, blank=True, validators=[https_url])
    website = models.URLField(max_length=500, blank=True, validators=[https_url])
    gender = models.CharField(max_length=32, blank=True, help_text="female, male, or another value.")
    birthdate = models.CharField(
        max_length=10, blank=True, validators=[validate_birthdate], help_text="YYYY-MM-DD or YYYY."
    )
    zoneinfo = models.CharField(
        "time zone", max_length=64, blank=True, validators=[validate_zoneinfo], help_text="Europe/Paris"
    )
    locale = models.CharField(max_length=35, blank=True, validators=[locale_tag], help_text="en-US")
    phone_number = models.CharField(
        max_length=32, blank=True, validators=[phone_e164], help_text="E.164: +14255551212"
    )
    phone_number_verified = models.BooleanField(default=False)
    # §5.1.1 address, in parts; ``formatted`` is made from them (uaa/oauth/claims.py).
    street_address = models.TextField(
        max_length=500, blank=True, help_text="One line per line of the address."
    )
    locality = models.CharField("city", max_length=150, blank=True)
    region = models.CharField("state or region", max_length=150, blank=True)
    postal_code = models.CharField(max_length=32, blank=True)
    country = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False, help_text="Can sign in to the admin site.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # Keycloak's "not before" revocation (accounts/revocation.py): grants made before these times are dead.
    not_before = models.DateTimeField(
        "grants not before",
        null=True,
        blank=True,
        editable=False,
        help_text="SSO sessions, codes, refresh and access tokens granted before this are refused.",
    )
    mfa_enrolled_at = models.DateTimeField(
        "second factor since",
        null=True,
        blank=True,
        editable=False,
        help_text="Set when the user first has a second factor; only an admin's reset clears it.",
    )
    sessions_not_before = models.DateTimeField(
        "sessions not before",
        null=True,
        blank=True,
        editable=False,
        help_text="SSO sessions (and the codes they issued) begun before this are ended.",
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]
        # The admin's actions on users, each behind its own permission (docs/security.md, staff roles).
        permissions = [
            ("reset_user_mfa", "Can reset a user's second factors"),
            ("unlock_user", "Can unlock a user's sign-in"),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = canonical_email(self.email)  # before the form's uniqueness check sees it
        if self._state.adding or not User.objects.filter(pk=self.pk, email=self.email).exists():
            try:  # a new address only: an account kept from before this check can still be edited
                validate_account_email(self.email)
            except ValidationError as exc:
                raise ValidationError({"email": exc.messages}) from None

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = canonical_email(self.email)
        super().save(*args, **kwargs)

    @property
    def sub(self) -> str:
        return str(self.id)

    def get_full_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()

    def get_short_name(self) -> str:
        return self.given_name or self.email


class BackupCodeQuerySet(models.QuerySet["BackupCode"]):
    def unused(self) -> BackupCodeQuerySet:
        return self.filter(used_at__isnull=True)

    def for_user(self, user: User) -> BackupCodeQuerySet:
        return self.filter(user=user)


class BackupCode(models.Model):
    """A backup code: single use, stored as a digest only (accounts/mfa/backup_codes.py)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="backup_codes")
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    objects = BackupCodeQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"backup code {self.digest[:8]} ({'used' if self.used_at else 'unused'})"


class WebAuthnCredential(models.Model):
    """A passkey or security key registered as a second factor (accounts/mfa/webauthn.py)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="webauthn_credentials")
    name = models.CharField(max_length=64)
    credential_id = models.CharField(max_length=1400, unique=True)  # base64url
    public_key = models.BinaryField()  # COSE_Key
    sign_count = models.PositiveBigIntegerField(default=0)
    backed_up = models.BooleanField(default=False, help_text="A synced (multi-device) passkey.")
    transports = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "WebAuthn credential"

    def __str__(self) -> str:
        return self.name


class SignInQuerySet(models.QuerySet["SignIn"]):
    def open(self) -> SignInQuerySet:
        """Sign-ins whose SSO session has not ended (``ended_at`` unset)."""
        return self.filter(ended_at=None)

    def for_session(self, session_key: str) -> SignInQuerySet:
        return self.filter(session_key=session_key)

    def for_user(self, user: User) -> SignInQuerySet:
        return self.filter(user=user)


class SignIn(models.Model):
    """A completed sign-in and the SSO session it started: "recent sign-ins" and "sign out everywhere"."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sign_ins")
    session_key = models.CharField(max_length=40, db_index=True)
    started_at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    amr = models.JSONField(default=list)
    acr = models.CharField(max_length=64, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = SignInQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.user_id} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class ThrottleCounterQuerySet(models.QuerySet["ThrottleCounter"]):
    def locked(self, now: datetime) -> ThrottleCounterQuerySet:
        """Counters whose lock is still running at ``now``."""
        return self.filter(locked_until__gt=now)

    def unlocked(self, now: datetime) -> ThrottleCounterQuerySet:
        """Counters without a running lock at ``now`` (never locked, or the lock is over)."""
        return self.exclude(locked_until__gt=now)


class ThrottleCounter(models.Model):
    """Failed credential attempts for one key (an account or a client IP), shared by every worker."""

    key = models.CharField(max_length=100, unique=True)
    failures = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)

    objects = ThrottleCounterQuerySet.as_manager()

    def __str__(self) -> str:
        return self.key


class SentMail(models.Model):
    """A message the backend reported as sent (accounts/mail.py): a retried or redelivered task that finds its
    message id here sends nothing. Holds the id and the time only, never an address or the content."""

    message_id = models.UUIDField(primary_key=True)
    template = models.CharField(max_length=100)
    sent_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.template} {self.message_id}"
