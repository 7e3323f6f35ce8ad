import { createSlice, type PayloadAction } from "@reduxjs/toolkit";
import type { TokenPair, User } from "../api/types";
import { saveRefreshToken } from "./tokens";

export interface AuthState {
  accessToken: string | null;
  /** Seconds since the epoch at which the access token expires (from `expires_in`). */
  expiresAt: number | null;
  user: User | null;
  /** Why the user was signed out, shown on the sign-in screen. */
  signedOutReason: string | null;
}

const initialState: AuthState = { accessToken: null, expiresAt: null, user: null, signedOutReason: null };

export const authSlice = createSlice({
  name: "auth",
  initialState,
  reducers: {
    tokensReceived(state, action: PayloadAction<TokenPair>) {
      state.accessToken = action.payload.access_token;
      state.expiresAt = Math.floor(Date.now() / 1000) + action.payload.expires_in;
      state.signedOutReason = null;
      // The refresh token is persisted here, in the one place that receives a pair, so the
      // stored token is always the newest of its (rotating) family.
      saveRefreshToken(action.payload.refresh_token);
    },
    userLoaded(state, action: PayloadAction<User>) {
      state.user = action.payload;
    },
    signedOut(state, action: PayloadAction<string | null | undefined>) {
      state.accessToken = null;
      state.expiresAt = null;
      state.user = null;
      state.signedOutReason = action.payload ?? null;
      saveRefreshToken(null);
    },
  },
});

export const { tokensReceived, userLoaded, signedOut } = authSlice.actions;
