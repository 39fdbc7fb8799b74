/* WebAuthn ceremonies for forms marked data-webauthn="create" (register) or "get" (sign in).
   The server renders the options (with a one-time challenge) into the page as JSON; this script asks the
   browser's authenticator, puts the credential (as JSON, base64url fields) into the form and submits it. */
(function () {
  "use strict";
  function toBytes(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var raw = atob(base64), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }
  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creationOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return { publicKey: options };
  }
  function requestOptions(options) {
    options.challenge = toBytes(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return { publicKey: options };
  }
  function serialize(credential) {
    var response = credential.response, json = {
      id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toBase64url(response.clientDataJSON) }
    };
    if (credential.authenticatorAttachment) { json.authenticatorAttachment = credential.authenticatorAttachment; }
    if (response.attestationObject) {
      json.response.attestationObject = toBase64url(response.attestationObject);
      if (response.getTransports) { json.response.transports = response.getTransports(); }
    } else {
      json.response.authenticatorData = toBase64url(response.authenticatorData);
      json.response.signature = toBase64url(response.signature);
      if (response.userHandle) { json.response.userHandle = toBase64url(response.userHandle); }
    }
    return JSON.stringify(json);
  }
  document.querySelectorAll("form[data-webauthn]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var field = form.querySelector("input[name=credential]");
      if (field.value) { return; }
      event.preventDefault();
      if (!window.PublicKeyCredential) { alert("This browser does not support security keys or passkeys."); return; }
      var options = JSON.parse(form.querySelector("#webauthn-options").textContent);
      var ceremony = form.dataset.webauthn === "create"
        ? navigator.credentials.create(creationOptions(options))
        : navigator.credentials.get(requestOptions(options));
      ceremony.then(function (credential) {
        field.value = serialize(credential);
        form.submit();
      }).catch(function () {
        field.value = "{}";
        form.submit();  /* the server refuses it and says so, and counts the attempt */
      });
    });
  });
})();
