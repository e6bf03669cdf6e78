// The endpoints page (stub: being built).
import { _, h } from "../app.js";

export default {
  render(container) {
    container.append(h("p", { class: "muted" }, _("This page is being built.")));
  },
};
