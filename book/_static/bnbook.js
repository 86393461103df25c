/* bn-book: open the navigation drawers from the buttons a reader can see.
   pydata-sphinx-theme 0.17 binds its drawer handlers to the FIRST .primary-toggle / .secondary-toggle
   of the page (querySelector), and sphinx-book-theme's header puts its own, visible buttons after
   hidden ones, so on a phone the menu and "Contents" buttons opened nothing (pydata-sphinx-theme
   issue 2451). Each visible button forwards its click to the first one, which has the handlers
   (the dialog on narrow screens, the collapsing sidebar on wide ones). */
(function () {
  function forward() {
    ["primary", "secondary"].forEach(function (side) {
      var toggles = document.querySelectorAll("." + side + "-toggle");
      for (var i = 1; i < toggles.length; i++) {
        toggles[i].addEventListener("click", function (event) {
          event.preventDefault();
          event.stopPropagation();
          toggles[0].click();
        });
      }
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", forward);
  } else {
    forward();
  }
})();
