/* global document */
// Offers the browser's time zone (progressive enhancement: without this script
// the portal shows times in the account's or the installation's zone as before).
(function () {
  'use strict';
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone) return;
  // /profile, while the user has not chosen: pre-select the browser's zone if the list has it.
  var select = document.querySelector('select[data-browser-time-zone]');
  if (select) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === zone) {
        select.value = zone;
        var hint = document.getElementById('time-zone-browser-hint');
        if (hint) hint.hidden = false;
        break;
      }
    }
  }
  // Any page, first visit: "Show times in <zone>?" when it differs from the zone in use.
  var offer = document.getElementById('time-zone-offer');
  if (offer && offer.getAttribute('data-current') !== zone) {
    offer.querySelector('input[name="time_zone"]').value = zone;
    var names = offer.querySelectorAll('[data-time-zone-name]');
    for (var j = 0; j < names.length; j++) names[j].textContent = zone;
    offer.hidden = false;
  }
})();
