"""Forms of the gateway pages. Flask-WTF adds and checks ``csrf_token`` on each.

Password fields are never stripped: leading and trailing spaces are part of the
password. Length limits here only stop oversized input early; the password policy
itself lives in the identity service.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
)

MAX_PASSWORD_LENGTH = 1024
# Logins are at most 64 characters (agentctl's limit); the form allows no more.
MAX_LOGIN_LENGTH = 64
# A WebAuthn response with "none" attestation is under 2 KB; the OTP service
# accepts up to 32 KB for authenticators that attach certificates.
MAX_CREDENTIAL_LENGTH = 32 * 1024
MAX_KEY_NAME_LENGTH = 64
# A token field takes OTP codes (up to 10 digits, people type spaces or hyphens)
# and recovery codes; the OTP service validates the exact format.
MAX_TOKEN_LENGTH = 32


def _strip(value: str | None) -> str | None:
    # Logins contain no spaces, so spaces around one come from copy and paste.
    return value.strip() if isinstance(value, str) else value


def _login_field() -> StringField:
    return StringField(
        "User name",
        filters=[_strip],
        validators=[
            InputRequired(message="Enter your user name."),
            Length(max=MAX_LOGIN_LENGTH, message="The user name is too long."),
        ],
        render_kw={"maxlength": MAX_LOGIN_LENGTH},
    )


def _password_field(label: str, message: str = "Enter your password."):
    return PasswordField(
        label,
        validators=[
            InputRequired(message=message),
            Length(
                max=MAX_PASSWORD_LENGTH,
                message=f"The password is too long: use at most "
                f"{MAX_PASSWORD_LENGTH} characters.",
            ),
        ],
        render_kw={"maxlength": MAX_PASSWORD_LENGTH},
    )


class LoginForm(FlaskForm):
    login = _login_field()
    password = _password_field("Password")


class ConfirmPasswordForm(FlaskForm):
    current_password = _password_field("Password")


class ForgotPasswordForm(FlaskForm):
    login = _login_field()


def _new_password_fields():
    new_password = _password_field("New password", "Enter a new password.")
    new_password_confirm = PasswordField(
        "Repeat the new password",
        validators=[
            InputRequired(message="Repeat the new password."),
            EqualTo("new_password", message="The two new passwords do not match."),
        ],
        render_kw={"maxlength": MAX_PASSWORD_LENGTH},
    )
    return new_password, new_password_confirm


class NewPasswordForm(FlaskForm):
    new_password, new_password_confirm = _new_password_fields()


class ChangePasswordForm(FlaskForm):
    current_password = _password_field(
        "Current password", "Enter your current password."
    )
    new_password, new_password_confirm = _new_password_fields()


class MethodForm(FlaskForm):
    method = RadioField(
        "Second factor",
        choices=[
            SelectChoice("email", "Token by email"),
            SelectChoice("app", "Authenticator app"),
            SelectChoice("webauthn", "Security key"),
        ],
        validators=[InputRequired(message="Choose a method.")],
    )
    email_security = BooleanField("Enable email security", false_values={"", "off"})


class TokenForm(FlaskForm):
    token = StringField(
        "Code",
        validators=[
            InputRequired(message="Enter the code."),
            Length(max=MAX_TOKEN_LENGTH, message="That is not a valid code."),
        ],
        render_kw={"maxlength": MAX_TOKEN_LENGTH},
    )


class VerifyForm(TokenForm):
    remember_device = BooleanField("Trust this browser for 30 days")


class ResendForm(FlaskForm):
    email_security = BooleanField("Enable email security", false_values={"", "off"})


class ActionForm(FlaskForm):
    """A form that is only a button: it carries nothing but the CSRF token."""


def _credential_field() -> HiddenField:
    # The page's script fills this field with the PublicKeyCredential as JSON.
    return HiddenField(
        validators=[
            InputRequired(message="Use your security key first."),
            Length(
                max=MAX_CREDENTIAL_LENGTH,
                message="The security key response is too large.",
            ),
        ]
    )


class SecurityKeyForm(FlaskForm):
    name = StringField(
        "Name of the key",
        filters=[_strip],
        validators=[
            # DataRequired checks after the strip filter, so a blank name fails.
            DataRequired(message='Give the key a name, for example "Blue USB key".'),
            Length(
                max=MAX_KEY_NAME_LENGTH,
                message=f"Use at most {MAX_KEY_NAME_LENGTH} characters.",
            ),
        ],
        render_kw={"maxlength": MAX_KEY_NAME_LENGTH},
    )
    credential = _credential_field()


class SecurityKeyVerifyForm(FlaskForm):
    credential = _credential_field()
    remember_device = BooleanField("Trust this browser for 30 days")


class RemoveKeyForm(FlaskForm):
    key_id = IntegerField(
        validators=[InputRequired(), NumberRange(min=1, max=2**31 - 1)]
    )
