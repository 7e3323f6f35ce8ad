import { createSlice, type PayloadAction } from "@reduxjs/toolkit";
import type { LiveMessage } from "./LiveClient";

export type LiveStatus = "off" | "connecting" | "up" | "down";

export interface LiveState {
  status: LiveStatus;
  /** Newest first: the live feed of payments and activities (at most 50). */
  feed: LiveMessage[];
}

const initialState: LiveState = { status: "off", feed: [] };

export const liveSlice = createSlice({
  name: "live",
  initialState,
  reducers: {
    liveStatus(state, action: PayloadAction<LiveStatus>) {
      state.status = action.payload;
    },
    feedReceived(state, action: PayloadAction<LiveMessage>) {
      state.feed.unshift(action.payload);
      if (state.feed.length > 50) state.feed.length = 50;
    },
  },
});

export const { liveStatus, feedReceived } = liveSlice.actions;
