import { mount } from '@vue/test-utils';
import { describe, expect, it } from 'vitest';
import OpenError from '../../src/renderer/src/components/OpenError.vue';
import { errorMessage } from '../../src/renderer/src/error-messages.ts';
import { ApiError, toApiError } from '../../src/renderer/src/lib/api-error.ts';
import { ERROR_CODES } from '../../src/shared/qcow2/errors-codes.ts';

describe('error messages', () => {
  it('has a sentence and a short label for every engine code', () => {
    for (const code of ERROR_CODES) {
      const words = errorMessage(code);
      expect(words.title, code).toMatch(/^[A-Z].*\.$/);
      expect(words.short.length, code).toBeLessThanOrEqual(28);
    }
  });

  it('says plainly what is wrong for the common failures to open', () => {
    expect(errorMessage('BAD_MAGIC').title).toBe('This file is not a qcow2 disk image.');
    expect(errorMessage('NOT_FOUND').title).toBe('There is no file or folder at this path.');
    expect(errorMessage('TRUNCATED').title).toContain('ends too early');
  });
});

describe('toApiError', () => {
  it('keeps the code and message of a wire error', () => {
    const error = toApiError({ code: 'BAD_MAGIC', message: '/x: not a qcow2 image' });
    expect(error).toBeInstanceOf(ApiError);
    expect(error.code).toBe('BAD_MAGIC');
    expect(error.message).toBe('/x: not a qcow2 image');
  });

  it('turns an unknown code or a bare Error into INTERNAL', () => {
    expect(toApiError({ code: 'EWHATEVER', message: 'x' }).code).toBe('INTERNAL');
    expect(toApiError(new Error('boom')).code).toBe('INTERNAL');
    expect(toApiError('text').message).toBe('text');
  });
});

describe('OpenError', () => {
  it('shows the sentence for the code and the engine message as detail', async () => {
    const wrapper = mount(OpenError, {
      props: { error: { code: 'BAD_MAGIC', message: '/tmp/readme.txt: no qcow2 magic (found 0x48656c6c)' } },
    });
    expect(wrapper.get('[data-testid="open-error-title"]').text()).toBe('This file is not a qcow2 disk image.');
    expect(wrapper.get('[data-testid="open-error-detail"]').text()).toContain('no qcow2 magic');
    expect(wrapper.get('[data-testid="open-error"]').attributes('data-code')).toBe('BAD_MAGIC');
    await wrapper.get('[data-testid="open-error-retry"]').trigger('click');
    expect(wrapper.emitted('retry')).toHaveLength(1);
  });
});
