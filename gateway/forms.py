"""Forms of the gateway pages. Flask-WTF adds and checks ``csrf_token`` on each.

Password fields are never stripped: leading and trailing spaces are part of the
password. Length limits here only stop oversized input early; the password policy
itself lives in the identity service.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, RadioField, StringField
from wtforms.validators import EqualTo, InputRequired, Length

MAX_PASSWORD_LENGTH = 1024
# A token field takes OTP codes (up to 10 digits, people type spaces or hyphens)
# and recovery codes; the OTP service validates the exact format.
MAX_TOKEN_LENGTH = 32


class LoginForm(FlaskForm):
    login = StringField("User name", validators=[InputRequired(), Length(max=200)])
    password = PasswordField(
        "Password", validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)]
    )


class ForgotPasswordForm(FlaskForm):
    login = StringField("User name", validators=[InputRequired(), Length(max=200)])


def _new_password_fields():
    new_password = PasswordField(
        "New password",
        validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)],
    )
    new_password_confirm = PasswordField(
        "Repeat the new password",
        validators=[
            InputRequired(),
            EqualTo("new_password", message="The two new passwords do not match."),
        ],
    )
    return new_password, new_password_confirm


class NewPasswordForm(FlaskForm):
    new_password, new_password_confirm = _new_password_fields()


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password",
        validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)],
    )
    new_password, new_password_confirm = _new_password_fields()


class MethodForm(FlaskForm):
    method = RadioField(
        "Second factor",
        choices=[("email", "Token by email"), ("app", "Authenticator app")],
        validators=[InputRequired(message="Choose a method.")],
    )
    email_security = BooleanField("Enable email security", false_values={"", "off"})


class TokenForm(FlaskForm):
    token = StringField(
        "Code", validators=[InputRequired(), Length(max=MAX_TOKEN_LENGTH)]
    )


class VerifyForm(TokenForm):
    remember_device = BooleanField("Trust this browser for 30 days")


class ResendForm(FlaskForm):
    email_security = BooleanField("Enable email security", false_values={"", "off"})


class ActionForm(FlaskForm):
    """A form that is only a button: it carries nothing but the CSRF token."""
