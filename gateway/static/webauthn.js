// Security keys (WebAuthn): runs navigator.credentials.create() or .get() with the
// options the server put in the form's data-webauthn-options attribute, then posts
// the PublicKeyCredential as JSON in the hidden "credential" field of that same
// form, together with its CSRF token. Binary fields travel as base64url.
"use strict";

function base64urlToBuffer(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function bufferToBase64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decodeDescriptors(list) {
  return (list || []).map((item) => ({ ...item, id: base64urlToBuffer(item.id) }));
}

function creationOptions(options) {
  return {
    ...options,
    challenge: base64urlToBuffer(options.challenge),
    user: { ...options.user, id: base64urlToBuffer(options.user.id) },
    excludeCredentials: decodeDescriptors(options.excludeCredentials),
  };
}

function requestOptions(options) {
  return {
    ...options,
    challenge: base64urlToBuffer(options.challenge),
    allowCredentials: decodeDescriptors(options.allowCredentials),
  };
}

function credentialToJSON(credential) {
  const response = credential.response;
  const json = {
    id: credential.id,
    rawId: bufferToBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: { clientDataJSON: bufferToBase64url(response.clientDataJSON) },
  };
  if (response.attestationObject) {
    json.response.attestationObject = bufferToBase64url(response.attestationObject);
    json.response.transports =
      typeof response.getTransports === "function" ? response.getTransports() : [];
  } else {
    json.response.authenticatorData = bufferToBase64url(response.authenticatorData);
    json.response.signature = bufferToBase64url(response.signature);
    json.response.userHandle = response.userHandle
      ? bufferToBase64url(response.userHandle)
      : null;
  }
  return json;
}

function describeError(error) {
  // Browsers report both a cancelled prompt and a timeout as NotAllowedError, and
  // do not say which of the two happened.
  if (error && error.name === "NotAllowedError") {
    return "The security key request was cancelled or timed out. Press the button to try again.";
  }
  if (error && error.name === "InvalidStateError") {
    return "This security key is already registered. Use another key.";
  }
  if (error && error.name === "SecurityError") {
    return "The browser refused the request because this address does not match the site's configured address.";
  }
  return "The security key could not be used (" + (error && error.name ? error.name : "unknown error") + "). Try again, or use another key.";
}

function showStatus(form, message) {
  const status = form.querySelector("[data-webauthn-status]");
  if (!status) return;
  status.textContent = message;
  status.hidden = false;
}

async function runCeremony(form) {
  const kind = form.dataset.webauthn;
  const options = JSON.parse(form.dataset.webauthnOptions);
  const credential =
    kind === "create"
      ? await navigator.credentials.create({ publicKey: creationOptions(options) })
      : await navigator.credentials.get({ publicKey: requestOptions(options) });
  form.querySelector('input[name="credential"]').value = JSON.stringify(
    credentialToJSON(credential),
  );
  form.submit();
}

function setUp(form) {
  const button = form.querySelector('button[type="submit"]');
  if (!window.PublicKeyCredential || !navigator.credentials) {
    showStatus(
      form,
      "This browser does not support security keys (WebAuthn). Use a current browser, or a recovery code.",
    );
    if (button) button.disabled = true;
    return;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    if (button) button.disabled = true;
    runCeremony(form).catch((error) => {
      showStatus(form, describeError(error));
      if (button) button.disabled = false;
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-webauthn]").forEach(setUp);
});
