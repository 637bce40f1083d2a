/**
 * Ties a dialog's problem line (JobDialog's) to the field it is about, for screen readers: that
 * field is marked invalid and described by the line, so moving to it says what is wrong with it.
 * A problem about the disk rather than a field (it is in use, say) marks no field.
 *
 *   const { problemId, fieldAttrs } = useFieldProblems(() => nameProblem.value === null ? null : 'name');
 *   <JobDialog :problem-id="problemId" …> <input v-bind="fieldAttrs('name')" …>
 */
import { useId } from 'vue';

export interface FieldProblemAttrs {
  'aria-invalid'?: 'true';
  'aria-describedby'?: string;
}

export function useFieldProblems<Field extends string>(faultyField: () => Field | null) {
  const problemId = useId();
  function fieldAttrs(field: Field): FieldProblemAttrs {
    return faultyField() === field ? { 'aria-invalid': 'true', 'aria-describedby': problemId } : {};
  }
  return { problemId, fieldAttrs };
}
