/**
 * Argument checks, run in JavaScript before any native call so that bad input is refused
 * synchronously and nothing is sent.
 * @module
 */
import { invalidArgType, invalidArgValue, outOfRange } from './errors'

/** Throws `ERR_INVALID_ARG_TYPE` unless `value` is a `Uint8Array` (a `Buffer` is one). */
export function validateUint8Array(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgType(name, 'an instance of Buffer or Uint8Array', value)
}

/**
 * Throws `ERR_INVALID_ARG_VALUE` for a view of a resizable `ArrayBuffer`: shrinking it while
 * the kernel may still read the memory cannot be prevented, so such buffers are refused up
 * front (growable `SharedArrayBuffer`s only grow, and stay).
 */
export function validateSendable(value: Uint8Array, name: string): void {
  if ((value.buffer as ArrayBuffer & { resizable?: boolean }).resizable === true) {
    throw invalidArgValue(
      name,
      'must not be a view of a resizable ArrayBuffer (its memory could shrink while the kernel reads it); copy it into a Buffer first',
      value,
    )
  }
}

/** Throws unless `value` is an integer in `[min, max]`. */
export function validateInteger(value: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value)
  if (value < min || value > max) throw outOfRange(name, `>= ${min} && <= ${max}`, value)
}

/** Throws unless `value` is `undefined` or a plain object. */
export function validateOptions(value: unknown, name: string): void {
  if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value))) {
    throw invalidArgType(name, 'of type object', value)
  }
}

/** Throws unless `value` is `undefined` or one of `allowed`. */
export function validateOneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): asserts value is T | undefined {
  if (value === undefined) return
  if (typeof value !== 'string') throw invalidArgType(name, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value)
  if (!allowed.includes(value as T)) throw invalidArgValue(name, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value)
}

/** Throws unless `value` is `undefined` or an `AbortSignal`. */
export function validateAbortSignal(value: unknown, name: string): asserts value is AbortSignal | undefined {
  if (value !== undefined && !(value instanceof AbortSignal)) throw invalidArgType(name, 'an instance of AbortSignal', value)
}
