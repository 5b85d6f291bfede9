// The browser's time zone for the pages (search, capture list, history): remembered in the
// "tz" cookie (the server shows times in it), and put into filter forms that have no zone yet
// so a shared URL carries it.
(function () {
  var tz = "";
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { tz = ""; }
  if (!tz) return;
  if (document.cookie.split("; ").indexOf("tz=" + encodeURIComponent(tz)) < 0) {
    document.cookie = "tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; samesite=lax";
  }
  document.querySelectorAll("input[name=tz][data-browser-tz]").forEach(function (el) {
    if (!el.value) el.value = tz;
  });
})();
