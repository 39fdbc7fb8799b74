/* OAuth 2.0 Form Post Response Mode §2: the authorization response's form is "auto-submitted in the User
   Agent" as soon as the page has it. A file rather than an inline script, so the Content-Security-Policy
   (script-src 'self') allows it with no hash or nonce; without JavaScript, the page's Continue button. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-form-post]");
  if (form) { form.submit(); }
})();
