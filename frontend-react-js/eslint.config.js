// ESLint (flat config): JavaScript's recommended rules and React's rules of hooks for the app, its
// unit tests and the browser tests; `npm run lint`, and `make lint` from the repository root.
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';

export default [
  { ignores: ['dist/', 'node_modules/'] },
  js.configs.recommended,
  {
    files: ['**/*.{js,jsx}'],
    languageOptions: {
      ecmaVersion: 'latest',
      sourceType: 'module',
      parserOptions: { ecmaFeatures: { jsx: true } },
      globals: { ...globals.browser },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  { files: ['src/**/*.{js,jsx}'], ...reactHooks.configs.flat.recommended },
  {
    // Run by Node: the build and test configuration, the stand-ins, the browser tests.
    files: ['*.config.js', 'src/test/**/*.js', 'src/**/*.test.{js,jsx}', 'e2e/**/*.js'],
    languageOptions: { globals: { ...globals.node } },
  },
];
