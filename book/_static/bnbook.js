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

/* bn-book: a display equation wider than the column scrolls sideways inside its own box (bnbook.css).
   Such a box is a tab stop, so that the keyboard can scroll it too (WCAG 2.1.1; axe's
   scrollable-region-focusable); one that fits is not, and stops being one when the window widens. */
(function () {
  function mark() {
    document.querySelectorAll("div.math .katex-display").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) {
        box.setAttribute("tabindex", "0");
      } else {
        box.removeAttribute("tabindex");
      }
    });
  }
  window.addEventListener("load", mark);
  window.addEventListener("resize", mark);
  if (document.fonts) {
    document.fonts.ready.then(mark);
  }
})();
