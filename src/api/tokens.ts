/** Tokens as the API lists them (`GET /drover/v1/tokens`): shared by the server's token store and the CLI. */
export type Role = 'admin' | 'view';

export interface TokenInfo {
  id: string;
  type: 'join' | 'api';
  role?: Role;
  description?: string;
  createdAt: string;
  expiresAt?: string;
  /** undefined = unlimited */
  usesLeft?: number;
  labels?: Record<string, string>;
  revoked: boolean;
}
