import "@testing-library/jest-dom/vitest";
import { cleanup, configure } from "@testing-library/react";
import { afterEach } from "vitest";

// findBy* waits for what the app renders after its fake API answers. The first render of a
// test file also loads the route's code, which on a loaded 2-core CI machine has taken over
// the default second (App.test.tsx's first test once took 1.4 s), so wait up to five: a
// query that never matches still fails, only later.
configure({ asyncUtilTimeout: 5000 });

afterEach(() => {
  cleanup();
  sessionStorage.clear();
});
