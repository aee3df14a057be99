// Portcullis developer portal: the API reference, drawn by the vendored Swagger UI from the
// API's OpenAPI definition (same origin). Its own "Try it out" is off: the API page's console
// sends requests through the portal with the member's key.
(function () {
  "use strict";
  var target = document.getElementById("reference");
  if (!target || typeof window.SwaggerUIBundle !== "function") return;
  target.textContent = "";
  window.SwaggerUIBundle({
    url: target.getAttribute("data-definition"),
    domNode: target,
    deepLinking: false,
    supportedSubmitMethods: [],
    validatorUrl: null,
    tryItOutEnabled: false,
    defaultModelsExpandDepth: 1,
    docExpansion: "list"
  });
})();
